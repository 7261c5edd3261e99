namespace Spa.Grains;

/// <summary>
/// A block of residual-stream activations passed from one shard to the next: row-major fp32 values of shape
/// [tokens, dim] for one session. Plain arrays, so that no TorchSharp type crosses a grain boundary.
/// </summary>
[GenerateSerializer, Alias("spa.Activations")]
public sealed record Activations([property: Id(0)] float[] Data, [property: Id(1)] int[] Shape);

/// <summary>
/// One step of one session through one shard: append the positions [StartPosition, TotalLength) of the session's
/// sequence to the shard's KV cache and return what the next shard (or the sampler) needs. The first shard reads
/// <see cref="Tokens"/> (the tokens at exactly those positions); the other shards read <see cref="Hidden"/> (the
/// previous shard's output for those positions). StartPosition 0 means "the sequence from its start": the shard
/// drops whatever it held for the session, which is how a session replays its whole history.
/// </summary>
[GenerateSerializer, Alias("spa.ShardStepRequest")]
public sealed record ShardStepRequest(
    [property: Id(0)] string SessionId,
    [property: Id(1)] int StartPosition,
    [property: Id(2)] int TotalLength,
    [property: Id(3)] int[]? Tokens,
    [property: Id(4)] Activations? Hidden,
    [property: Id(5)] bool WantTaps = false);

/// <summary>
/// A shard's answer. When the shard does not hold the session's positions before StartPosition (its cache slot was
/// evicted, or the grain was re-activated), <see cref="NeedsReplay"/> is set and nothing was computed: the session
/// sends its whole history again from position 0. Otherwise <see cref="Hidden"/> holds the activations of the new
/// positions for the next shard, and the last shard returns instead the fp32 <see cref="Logits"/> after the last one.
/// When the request set <see cref="ShardStepRequest.WantTaps"/>, <see cref="Taps"/> holds the residual stream at the last
/// new position after each of the shard's layers (shard 0: h_0 first), shape [rows, dim], and the last shard also returns
/// <see cref="Normed"/>, the final norm's output n there (dim values).
/// </summary>
[GenerateSerializer, Alias("spa.ShardStepResult")]
public sealed record ShardStepResult(
    [property: Id(0)] bool NeedsReplay,
    [property: Id(1)] Activations? Hidden,
    [property: Id(2)] float[]? Logits,
    [property: Id(3)] Activations? Taps = null,
    [property: Id(4)] float[]? Normed = null);

/// <summary>
/// What a shard serves and the model facts a session needs to drive a generation; where it runs: the silo (its address
/// as Orleans parses it) and the accelerator placement gave it.
/// </summary>
[GenerateSerializer, Alias("spa.ShardDescription")]
public sealed record ShardDescription(
    [property: Id(0)] string Model,
    [property: Id(1)] int Shard,
    [property: Id(2)] int ShardCount,
    [property: Id(3)] int FirstLayer,
    [property: Id(4)] int EndLayer,
    [property: Id(5)] int Layers,
    [property: Id(6)] int VocabSize,
    [property: Id(7)] int MaxSequenceLength,
    [property: Id(8)] int BosId,
    [property: Id(9)] int EosId,
    [property: Id(10)] string Accelerator = "",
    [property: Id(11)] string Silo = "");

/// <summary>
/// A shard's KV-cache and batching counters. Evictions: slots taken from the least recently used session for another
/// one; ReplayRequests: steps answered with <see cref="ShardStepResult.NeedsReplay"/>. Forwards: batched forwards run
/// (each over the steps of one or more sessions); LargestBatch and MeanBatch: steps per forward, the largest and the mean.
/// </summary>
[GenerateSerializer, Alias("spa.ShardStats")]
public sealed record ShardStats(
    [property: Id(0)] int Slots,
    [property: Id(1)] int SessionsHeld,
    [property: Id(2)] long KvCacheBytes,
    [property: Id(3)] long Steps,
    [property: Id(4)] long Evictions,
    [property: Id(5)] long ReplayRequests,
    [property: Id(6)] long Forwards = 0,
    [property: Id(7)] int LargestBatch = 0,
    [property: Id(8)] double MeanBatch = 0);

/// <summary>
/// A generation in base mode. <see cref="Shards"/> picks the shard count (0: the configured default);
/// <see cref="Model"/> the model name (null: the configured model). Sampling as <c>Spa.Model.Sampling.SamplingOptions</c>:
/// <see cref="Temperature"/> 0 is greedy (the default); otherwise the next token is drawn after top-k (0: off) and
/// top-p (1: off), from a random sequence fixed by <see cref="Seed"/> (null: the engine's default seed, 42), so that the
/// same request gives the same tokens, and the same tokens as the in-process engine. <see cref="RepetitionPenalty"/>
/// 1 is off. <see cref="Mode"/>: "base" (the default), or a ladder plugin's "parallel" (W_lm (n + out) at every token)
/// or "spa" (the cloud-side gate asks the device <see cref="DeviceId"/> only when p > <see cref="Tau"/>; null: the
/// plugin's own tau).
/// </summary>
[GenerateSerializer, Alias("spa.GenerationRequest")]
public sealed record GenerationRequest(
    [property: Id(0)] int[] PromptTokens,
    [property: Id(1)] int MaxTokens,
    [property: Id(2)] int Shards = 0,
    [property: Id(3)] string? Model = null,
    [property: Id(4)] double Temperature = 0,
    [property: Id(5)] double TopP = 1.0,
    [property: Id(6)] int TopK = 0,
    [property: Id(7)] long? Seed = null,
    [property: Id(8)] double RepetitionPenalty = 1.0,
    [property: Id(9)] string Mode = "base",
    [property: Id(10)] string? DeviceId = null,
    [property: Id(11)] double? Tau = null);

/// <summary>
/// Tokens generated by one call. StopReason: "eos" (end of sequence, the token is included), "length" (the call's
/// token budget is spent; <c>Continue</c> can go on), "context" (the model's context is full). The counters cover the
/// whole generation so far (every call since <c>Generate</c>): tokens generated, calls to the edge device
/// (transmissions) and the bytes they carried (fp32, 4 bytes a value); <see cref="M"/> is transmissions per token.
/// </summary>
[GenerateSerializer, Alias("spa.GenerationResult")]
public sealed record GenerationResult(
    [property: Id(0)] int[] Tokens,
    [property: Id(1)] string StopReason,
    [property: Id(2)] int HistoryLength,
    [property: Id(3)] int Replays,
    [property: Id(4)] string Mode = "base",
    [property: Id(5)] long GeneratedTokens = 0,
    [property: Id(6)] long Transmissions = 0,
    [property: Id(7)] long BytesUp = 0,
    [property: Id(8)] long BytesDown = 0)
{
    /// <summary>Round trips to the edge per generated token.</summary>
    public double M => GeneratedTokens == 0 ? 0 : (double)Transmissions / GeneratedTokens;
}

/// <summary>One side step on an edge device: the taps h_0..h_L of one position, shape [L+1, dim].</summary>
[GenerateSerializer, Alias("spa.EdgeSideStepRequest")]
public sealed record EdgeSideStepRequest(
    [property: Id(0)] string SessionId,
    [property: Id(1)] Activations Taps);

/// <summary>
/// The side network's <see cref="Out"/> (dim values) and what this round trip carried (fp32: 4 bytes a value);
/// <see cref="RoundTrips"/> is the device's total so far, this one included.
/// </summary>
[GenerateSerializer, Alias("spa.EdgeSideStepResult")]
public sealed record EdgeSideStepResult(
    [property: Id(0)] float[] Out,
    [property: Id(1)] long BytesUp,
    [property: Id(2)] long BytesDown,
    [property: Id(3)] long RoundTrips);

/// <summary>A registered device: its owner, where its (simulated) plugin lives and the base model it was trained on.</summary>
[GenerateSerializer, Alias("spa.EdgeDeviceInfo")]
public sealed record EdgeDeviceInfo(
    [property: Id(0)] string DeviceId,
    [property: Id(1)] string Owner,
    [property: Id(2)] string PluginDirectory,
    [property: Id(3)] string Model);

/// <summary>Round trips a device has answered and the bytes they carried, up (taps) and down (out).</summary>
[GenerateSerializer, Alias("spa.EdgeDeviceStats")]
public sealed record EdgeDeviceStats(
    [property: Id(0)] long RoundTrips,
    [property: Id(1)] long BytesUp,
    [property: Id(2)] long BytesDown);
