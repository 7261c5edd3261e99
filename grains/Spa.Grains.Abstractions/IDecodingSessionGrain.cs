using Orleans.Runtime;

namespace Spa.Grains;

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
/// Every token a session generates is also published on the Orleans stream <c>spa-tokens/{sessionId}</c> of the stream
/// provider <see cref="Provider"/>, as a <see cref="TokenEvent"/>.
/// </summary>
public static class TokenStreams
{
    public const string Provider = "spa";
    public const string Namespace = "spa-tokens";

    public static StreamId For(string sessionId) => StreamId.Create(Namespace, sessionId);
}
