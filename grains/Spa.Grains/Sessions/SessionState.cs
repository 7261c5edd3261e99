using Spa.Grains.Abstractions;

namespace Spa.Grains.Sessions;

/// <summary>
/// The persisted part of a session: the request it generates for, every token so far and the generation's counters.
/// A state without a <see cref="Request"/> holds no generation.
/// </summary>
[GenerateSerializer, Alias("spa.SessionState")]
public sealed class SessionState
{
    /// <summary>The prompt's tokens, then every generated one.</summary>
    [Id(0)] public List<int> History { get; set; } = [];

    [Id(1)] public int PromptLength { get; set; }

    /// <summary>The request that started the generation, with its model and shard count resolved.</summary>
    [Id(2)] public GenerationRequest? Request { get; set; }

    [Id(3)] public SequenceLimits Limits { get; set; } = SequenceLimits.None;

    /// <summary>The generation's token budget: how many tokens it may have generated when the current call ends.</summary>
    [Id(4)] public int MaxGenerated { get; set; }

    /// <summary>Why the generation ended; null while it can go on.</summary>
    [Id(5)] public StopReason? Stopped { get; set; }

    [Id(6)] public EdgeTotals Edge { get; set; } = EdgeTotals.None;

    /// <summary>Time spent on everything but the device and the network, over the whole generation.</summary>
    [Id(7)] public double CloudMs { get; set; }

    /// <summary>When a released session is deleted (null while it is in use).</summary>
    [Id(8)] public DateTimeOffset? ExpiresAt { get; set; }

    /// <summary>For each generated token, whether the device took part and whether it was made without the plugin.</summary>
    [Id(9)] public List<TokenOrigin> Origins { get; set; } = [];

    public int Generated => History.Count - PromptLength;

    public bool Finished => Stopped is not null;

    public bool HasGeneration => Request is not null && History.Count > 0;

    public SessionMode Mode => Request?.Plugin.Mode ?? SessionMode.Base;

    /// <summary>A token budget of <paramref name="wanted"/> generated tokens, cut to what the context leaves after the prompt.</summary>
    public int Budget(int wanted) => Math.Min(wanted, Limits.MostGenerated(PromptLength));

    /// <summary>The event of generated token <paramref name="index"/>, as it was made.</summary>
    public TokenEvent TokenAt(int index) =>
        TokenOrigins.Event(index, History[PromptLength + index], index < Origins.Count ? Origins[index] : TokenOrigin.Cloud);

    /// <summary>What a call that made <paramref name="tokens"/> answers, with the whole generation's counters.</summary>
    public GenerationResult Result(int[] tokens, int replays) => new(tokens, Stopped ?? StopReason.Length, History.Count, replays)
    {
        Mode = Mode,
        GeneratedTokens = Generated,
        Edge = Edge,
        CloudMs = CloudMs,
    };

    /// <summary>
    /// Appends a generated token with what it cost: the device's round trips (<paramref name="asked"/>: the device took
    /// part in it) and the cloud's time. The generation ends where the sequence does (<see cref="SequenceLimits"/>).
    /// </summary>
    public TokenEvent Append(int token, EdgeUsage edge, bool asked, double cloudMs)
    {
        History.Add(token);
        Edge = Edge.Add(edge, asked);
        CloudMs += cloudMs;
        Stopped = Limits.StopAfter(token, History.Count);
        var made = new TokenEvent(Generated - 1, token, asked, edge.Degraded);
        Origins.Add(TokenOrigins.Of(made));
        return made;
    }
}

/// <summary>What the model takes and where it ends a sequence: its context and vocabulary, and the tokens that end a story.</summary>
[GenerateSerializer, Alias("spa.SequenceLimits")]
public sealed record SequenceLimits(
    [property: Id(0)] int MaxSequenceLength,
    [property: Id(1)] int BosId,
    [property: Id(2)] int EosId,
    [property: Id(3)] int VocabSize)
{
    public static readonly SequenceLimits None = new(0, -1, -1, 0);

    /// <summary>The most tokens a generation after a prompt of <paramref name="promptLength"/> can make: it ends when the context is full (<see cref="StopAfter"/>).</summary>
    public int MostGenerated(int promptLength) => MaxSequenceLength + 1 - promptLength;

    public static SequenceLimits Of(ShardDescription shard) => new(shard.MaxSequenceLength, shard.BosId, shard.EosId, shard.VocabSize);

    /// <summary>Refuses a prompt that leaves no room to generate or holds a token outside the vocabulary.</summary>
    public void CheckPrompt(int[] prompt)
    {
        if (prompt.Length >= MaxSequenceLength)
            throw new InvalidSettingException($"the prompt has {prompt.Length} tokens but the model's context holds {MaxSequenceLength}, leaving no room to generate", "prompt");
        if (prompt.Any(t => (uint)t >= (uint)VocabSize))
            throw new InvalidSettingException($"a prompt token is outside the vocabulary of {VocabSize}", "prompt");
    }

    /// <summary>
    /// Why a sequence that just got <paramref name="token"/> as its <paramref name="length"/>-th token ends, or null: end
    /// of sequence (EOS, or BOS which llama2.c models emit between stories), or a full context, as the in-process
    /// engine's generator decides.
    /// </summary>
    public StopReason? StopAfter(int token, int length) =>
        token == EosId || token == BosId ? StopReason.Eos
        : length > MaxSequenceLength ? StopReason.Context
        : null;
}

/// <summary>How a generated token was made, kept with it so that a resumed stream reports what the first one did.</summary>
[Flags]
public enum TokenOrigin : byte
{
    Cloud = 0,
    Edge = 1,
    Degraded = 2,
}

internal static class TokenOrigins
{
    public static TokenOrigin Of(TokenEvent token) =>
        (token.Edge ? TokenOrigin.Edge : TokenOrigin.Cloud) | (token.Degraded ? TokenOrigin.Degraded : TokenOrigin.Cloud);

    public static TokenEvent Event(int index, int token, TokenOrigin origin) =>
        new(index, token, origin.HasFlag(TokenOrigin.Edge), origin.HasFlag(TokenOrigin.Degraded));
}
