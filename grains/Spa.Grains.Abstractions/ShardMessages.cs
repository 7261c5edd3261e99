namespace Spa.Grains.Abstractions;

/// <summary>
/// A block of residual-stream activations passed from one shard to the next: row-major fp32 values of shape
/// [tokens, dim] for one session. Plain arrays, so that no TorchSharp type crosses a grain boundary. Immutable: each
/// block is made for one call and nobody writes to it afterwards, so a call within a silo passes it without a copy.
/// </summary>
[GenerateSerializer, Immutable, Alias("spa.Activations")]
public sealed record Activations([property: Id(0)] float[] Data, [property: Id(1)] int[] Shape);

/// <summary>
/// One step of one session through one shard: append the positions [StartPosition, TotalLength) of the session's
/// sequence to the shard's KV cache and return what the next shard (or the sampler) needs. The first shard reads
/// <see cref="Tokens"/> (the tokens at exactly those positions); the other shards read <see cref="Hidden"/> (the
/// previous shard's output for those positions). StartPosition 0 means "the sequence from its start": the shard
/// drops whatever it held for the session, which is how a session replays its whole history.
/// <see cref="SentAt"/>: the <see cref="System.Diagnostics.Stopwatch"/> timestamp at which the session sent the step
/// when it profiles its token path (0 otherwise); the shard then returns its <see cref="ShardTimings"/>. Immutable, as
/// every part of it: the session makes it for one call and the shard only reads it, so a call within a silo passes it
/// without a copy.
/// </summary>
[GenerateSerializer, Immutable, Alias("spa.ShardStepRequest")]
public sealed record ShardStepRequest(
    [property: Id(0)] string SessionId,
    [property: Id(1)] int StartPosition,
    [property: Id(2)] int TotalLength,
    [property: Id(3)] int[]? Tokens,
    [property: Id(4)] Activations? Hidden,
    [property: Id(5)] bool WantTaps = false,
    [property: Id(6)] SplitEdge? Edge = null,
    [property: Id(7)] bool RecordRoundTrips = false,
    [property: Id(8)] long SentAt = 0);

/// <summary>
/// A session whose plugin sits inside the base (<see cref="SessionMode.Lora"/>, <see cref="SessionMode.Adapter"/>): the
/// shard calls the device <see cref="DeviceId"/> inside every layer it runs for the session, one round trip per call.
/// </summary>
[GenerateSerializer, Alias("spa.SplitEdge")]
public sealed record SplitEdge(
    [property: Id(0)] string DeviceId,
    [property: Id(1)] SessionMode Mode);

/// <summary>
/// The round trips a shard made to a session's device in one step: their count, the bytes they carried (fp32), the
/// time the device computed and the rest of their time (the network's). Degraded: a call failed and the layer ran
/// without the plugin. <see cref="FailedTransmissions"/>: calls the device did not answer (failed, timed out, or refused
/// while it is offline); they are not in <see cref="Transmissions"/>, and their wait is in <see cref="NetworkMs"/>.
/// <see cref="RoundTrips"/> lists each answered call when the request asked for them (a traced step).
/// </summary>
[GenerateSerializer, Alias("spa.EdgeUsage")]
public sealed record EdgeUsage(
    [property: Id(0)] long Transmissions,
    [property: Id(1)] long BytesUp,
    [property: Id(2)] long BytesDown,
    [property: Id(3)] double EdgeMs,
    [property: Id(4)] double NetworkMs,
    [property: Id(5)] bool Degraded,
    [property: Id(6)] string? Failure = null,
    [property: Id(7)] EdgeRoundTrip[]? RoundTrips = null,
    [property: Id(8)] long FailedTransmissions = 0);

/// <summary>One round trip to a device: what it asked (and for which base layer), the bytes it carried, the device's compute time and the network's.</summary>
[GenerateSerializer, Alias("spa.EdgeRoundTrip")]
public sealed record EdgeRoundTrip(
    [property: Id(0)] EdgeCallKind Kind,
    [property: Id(1)] int Layer,
    [property: Id(2)] long BytesUp,
    [property: Id(3)] long BytesDown,
    [property: Id(4)] double EdgeMs,
    [property: Id(5)] double NetworkMs);

/// <summary>
/// A shard's answer. When the shard does not hold the session's positions before StartPosition (its cache slot was
/// evicted, or the grain was re-activated), <see cref="NeedsReplay"/> is set and nothing was computed: the session
/// sends its whole history again from position 0. Otherwise <see cref="Hidden"/> holds the activations of the new
/// positions for the next shard, and the last shard returns instead the fp32 <see cref="Logits"/> after the last one.
/// When the request set <see cref="ShardStepRequest.WantTaps"/>, <see cref="Taps"/> holds the residual stream at the last
/// new position after each of the shard's layers (shard 0: h_0 first), shape [rows, dim], and the last shard also returns
/// <see cref="Normed"/>, the final norm's output n there (dim values). <see cref="Timings"/>: where the step's time went
/// in the shard, when the request carried <see cref="ShardStepRequest.SentAt"/>. Immutable, as every part of it: the
/// shard keeps nothing of it and the session only reads it (the sampler works on a copy of the logits), so the answer
/// within a silo comes without a copy.
/// </summary>
[GenerateSerializer, Immutable, Alias("spa.ShardStepResult")]
public sealed record ShardStepResult(
    [property: Id(0)] bool NeedsReplay,
    [property: Id(1)] Activations? Hidden,
    [property: Id(2)] float[]? Logits,
    [property: Id(3)] Activations? Taps = null,
    [property: Id(4)] float[]? Normed = null,
    [property: Id(5)] EdgeUsage? Edge = null,
    [property: Id(6)] ShardTimings? Timings = null);

/// <summary>
/// <see cref="System.Diagnostics.Stopwatch"/> timestamps of one step in a shard: its call began to run in the shard
/// grain (<see cref="Received"/>), joined a batch (<see cref="Batched"/>), was handed to the torch worker with its batch
/// (<see cref="HandedToWorker"/>), whose forward ran from <see cref="ForwardStarted"/> to <see cref="ForwardEnded"/>,
/// the batch's turn resumed in the grain (<see cref="WorkerReturned"/>), and the call returned (<see cref="Returned"/>).
/// Comparable with the session's timestamps only within one machine, which is where the token path is profiled.
/// </summary>
[GenerateSerializer, Immutable, Alias("spa.ShardTimings")]
public sealed record ShardTimings(
    [property: Id(0)] long Received,
    [property: Id(1)] long Batched,
    [property: Id(2)] long HandedToWorker,
    [property: Id(3)] long ForwardStarted,
    [property: Id(4)] long ForwardEnded,
    [property: Id(5)] long WorkerReturned,
    [property: Id(6)] long Returned);

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
