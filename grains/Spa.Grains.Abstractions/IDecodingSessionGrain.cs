namespace Spa.Grains.Abstractions;

/// <summary>One generation, keyed by the session id. Owns the token history; drives the shards token by token.</summary>
[Alias("spa.IDecodingSessionGrain")]
public interface IDecodingSessionGrain : IGrainWithStringKey
{
    /// <summary>Starts a new generation from the prompt (any earlier one of this session is dropped) and runs it.</summary>
    [Alias("Generate")]
    ValueTask<GenerationResult> Generate(GenerationRequest request);

    /// <summary>Generates up to <paramref name="maxTokens"/> more tokens of the current generation.</summary>
    [Alias("Continue")]
    ValueTask<GenerationResult> Continue(int maxTokens);

    /// <summary>As <see cref="Generate"/>, but yields each token as soon as it is chosen; cancelling stops the generation.</summary>
    [Alias("GenerateStream")]
    IAsyncEnumerable<TokenEvent> GenerateStream(GenerationRequest request, CancellationToken cancellation = default);

    /// <summary>
    /// Goes on with the stored generation after a break (the caller lost its stream, or the session's silo died): yields
    /// the tokens from index <paramref name="fromGenerated"/> (the count the caller has), the stored ones first, then
    /// generates until the generation's budget, raised to <paramref name="maxGenerated"/> tokens if it is lower (so that
    /// asking twice raises it once), is spent or the generation finished; a budget never exceeds what the context leaves
    /// after the prompt. A session deleted while its tokens are read ends the stream with
    /// <see cref="SessionEndedException"/>. Tokens
    /// a dead silo had not stored yet are generated again (the same ones: the sampler is rebuilt from seed and history);
    /// those before <paramref name="fromGenerated"/> are not yielded. Stored tokens are yielded with the Edge and
    /// Degraded flags they were made with.
    /// </summary>
    [Alias("ResumeStream")]
    IAsyncEnumerable<TokenEvent> ResumeStream(int fromGenerated, int maxGenerated = 0, CancellationToken cancellation = default);

    /// <summary>
    /// Raises the generation's token budget by <paramref name="moreTokens"/> (within what the context leaves) and returns
    /// the new budget. Each call raises it once, so that concurrent resumes of one session each get their tokens; pass
    /// the result to <see cref="ResumeStream"/>, which may then be retried without raising it again.
    /// </summary>
    [Alias("RaiseBudget")]
    ValueTask<int> RaiseBudget(int moreTokens);

    /// <summary>The session as stored: its owner, prompt and generated tokens, budget, state and counters; null if there is none.</summary>
    [Alias("Describe")]
    ValueTask<SessionSnapshot?> Describe();

    /// <summary>
    /// The generation is done for now: frees its KV-cache slots on every shard but keeps its history, which can be read
    /// back or resumed until the retention period (Spa:Sessions:RetentionMinutes) passes without a call, then is deleted.
    /// </summary>
    [Alias("Release")]
    ValueTask Release();

    /// <summary>The counters of the generation so far (no tokens), as the last <see cref="Generate"/> would return them.</summary>
    [Alias("GetStatus")]
    ValueTask<GenerationResult> GetStatus();

    /// <summary>The session's whole token sequence (prompt and generated tokens).</summary>
    [Alias("GetHistory")]
    ValueTask<int[]> GetHistory();

    /// <summary>Ends the session: frees its KV-cache slots on every shard and forgets its history.</summary>
    [Alias("End")]
    ValueTask End();
}

/// <summary>
/// A stored session: whose it is (<see cref="User"/>), its whole token sequence (the first <see cref="PromptLength"/> are
/// the prompt), the generation's token budget, whether it finished and why, its counters, and the stop strings of the
/// request that started it.
/// </summary>
[GenerateSerializer, Alias("spa.SessionSnapshot")]
public sealed record SessionSnapshot(
    [property: Id(0)] string? User,
    [property: Id(1)] int[] History,
    [property: Id(2)] int PromptLength,
    [property: Id(3)] int MaxGenerated,
    [property: Id(4)] bool Finished,
    [property: Id(5)] GenerationResult Status,
    [property: Id(6)] string[] Stop)
{
    public int Generated => History.Length - PromptLength;

    public int[] GeneratedTokens => History[PromptLength..];
}

/// <summary>
/// Every token a session generates is also published on the Orleans stream <c>spa-tokens/{sessionId}</c> of the stream
/// provider <see cref="Provider"/>, as a <see cref="TokenEvent"/>.
/// </summary>
public static class TokenStreams
{
    public const string Provider = "spa";
    public const string Namespace = "spa-tokens";

    public static StreamId For(string sessionId) => StreamId.Create(Namespace, sessionId);
}
