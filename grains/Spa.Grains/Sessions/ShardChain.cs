using System.Diagnostics;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Sessions;

/// <summary>
/// One session's way through the shards 0..N-1 of its model, in order, with activations as float arrays between them.
/// A shard that no longer holds the session's earlier positions (its slot was evicted, or it was re-activated) asks for
/// a replay, and the chain sends the whole history again from position 0, which rebuilds every shard's cache in one
/// prefill. A call that fails because the shard's silo died is tried again until <paramref name="retry"/> passes (the
/// shard re-activates elsewhere and asks for a replay).
/// </summary>
/// <param name="shard">Shard k of the chain.</param>
/// <param name="profile">Where the shard calls' timings go when the token path is profiled; null otherwise.</param>
public sealed class ShardChain(string sessionId, int shards, Func<int, IBaseModelShardGrain> shard, TimeSpan retry, TokenPathProfile? profile = null)
{
    // Resolved once: a grain reference from a string key resolves the interface's type on every call, a share of every token.
    private readonly IBaseModelShardGrain?[] _grains = new IBaseModelShardGrain?[shards];

    /// <summary>How many steps had to be replayed.</summary>
    public int Replays { get; private set; }

    /// <summary>
    /// Positions [<paramref name="fed"/>, history.Length) through every shard, replayed from 0 when a shard asks.
    /// <paramref name="wantTaps"/>: return the residual stream of the last position after each layer, and n.
    /// <paramref name="split"/>: the shards call this device inside their layers. <paramref name="recordRoundTrips"/>:
    /// keep each device round trip (a traced step).
    /// </summary>
    public async Task<ChainStep> StepAsync(int[] history, int fed, bool wantTaps, SplitEdge? split, bool recordRoundTrips)
    {
        var step = await RunAsync(history, fed, wantTaps, split, recordRoundTrips);
        if (!step.NeedsReplay) return step;
        Replays++;
        var replayed = await RunAsync(history, 0, wantTaps, split, recordRoundTrips);
        if (replayed.NeedsReplay) throw new InvalidOperationException("a shard lost the session's cache again while it was being replayed");
        replayed.Edge.Add(step.Edge.ToUsage()); // the shards before the one that lost the cache called the device: those calls happened
        return replayed;
    }

    /// <summary>Frees the session's cache slots; a shard whose silo died holds none, so a silo loss is no failure here.</summary>
    public Task ReleaseAsync() => Task.WhenAll(Enumerable.Range(0, shards).Select(async k =>
    {
        try
        {
            await Shard(k).Release(sessionId);
        }
        catch (Exception e) when (SiloLoss.IsSiloLoss(e))
        {
        }
    }));

    private async Task<ChainStep> RunAsync(int[] history, int start, bool wantTaps, SplitEdge? split, bool recordRoundTrips)
    {
        Activations? hidden = null;
        var taps = new List<Activations>();
        var usage = new EdgeCounter(recordRoundTrips);
        for (int k = 0; k < shards; k++)
        {
            var tokens = k == 0 ? history[start..] : null;
            var grain = Shard(k);
            long sent = 0;
            var result = await SiloLoss.RetryAsync(() =>
            {
                sent = profile is null ? 0 : Stopwatch.GetTimestamp();
                return grain.Step(new ShardStepRequest(sessionId, start, history.Length, tokens, hidden, wantTaps, split, recordRoundTrips, sent)).AsTask();
            }, $"step of session '{sessionId}' on shard {k}", retry);
            if (result.Timings is { } timings) profile?.ShardCall(sent, timings, Stopwatch.GetTimestamp());
            if (result.NeedsReplay) return new ChainStep(null, taps, null, usage);
            if (result.Edge is { } edge) usage.Add(edge);
            if (wantTaps) taps.Add(result.Taps ?? throw new InvalidOperationException($"shard {k} returned no taps"));
            if (k == shards - 1)
                return new ChainStep(result.Logits ?? throw new InvalidOperationException("the last shard returned no logits"), taps, result.Normed, usage);
            hidden = result.Hidden ?? throw new InvalidOperationException($"shard {k} returned no activations");
        }
        throw new InvalidOperationException("a session needs at least one shard");
    }

    private IBaseModelShardGrain Shard(int k) => _grains[k] ??= shard(k);
}

/// <summary>
/// What the shards return for one step: the base's logits (null when a shard needs a replay), the taps of the last
/// position and n when asked, and the devices' round trips, those of the shards that ran before a replay was asked
/// for included.
/// </summary>
public sealed record ChainStep(float[]? Logits, List<Activations> Taps, float[]? Normed, EdgeCounter Edge)
{
    public bool NeedsReplay => Logits is null;
}
