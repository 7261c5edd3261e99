using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Spa.Grains.Abstractions;

namespace Spa.Grains;

/// <summary>
/// The names of the meter and the activity source of the serving path, and what their instruments share. Names are
/// chosen so that the Prometheus exporter's suffixes (the unit, and <c>_total</c> for counters) give the documented
/// names; byte counts carry no unit so that nothing doubles "bytes". Labels are bounded (mode, component, direction,
/// choice, status, reason, storage), never a session, user or device id.
/// </summary>
public static class SpaTelemetry
{
    public const string MeterName = "Spa";

    /// <summary>The activity source of the serving path's traces (<see cref="SpaTracing"/>), named as the meter.</summary>
    public const string ActivitySourceName = "Spa";

    /// <summary>What this server reports as <c>gen_ai.provider.name</c> in GenAI metrics and spans.</summary>
    public const string GenAiProvider = "spa_orleans";

    /// <summary>
    /// Buckets of the time histograms: from a small model's decode step (a tenth of a millisecond) and a local device's
    /// answer, up to multi-second prefills and slow links; about three buckets per decade, so that a quantile is within
    /// a factor of ~2.5.
    /// </summary>
    public static readonly InstrumentAdvice<double> Seconds = new()
    {
        HistogramBucketBoundaries = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    };
}

/// <summary>
/// What the grains count on the meter <c>Spa</c>, recorded where each fact is known (session grains, shard grains,
/// device grains, the memory storage). The gauges are over this process's grains only: a dashboard sums them over silos.
/// The HTTP host's own facts are in the host's metrics, on the same meter.
/// </summary>
public sealed class GrainMetrics
{
    private static readonly InstrumentAdvice<double> Seconds = SpaTelemetry.Seconds;

    private static readonly InstrumentAdvice<int> BatchSizes = new() { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128] };

    // Preallocated tags: recording a token's figures allocates nothing.
    private static readonly KeyValuePair<string, object?> Up = new("direction", "up"), Down = new("direction", "down");
    private static readonly KeyValuePair<string, object?> ToEdge = new("choice", "edge"), ToCloud = new("choice", "cloud");
    private static readonly KeyValuePair<string, object?> Cloud = new("component", "cloud"), Edge = new("component", "edge"),
        Network = new("component", "network"), Total = new("component", "total");
    private static readonly Dictionary<SessionMode, KeyValuePair<string, object?>> Modes =
        SessionModes.All.ToDictionary(m => m, m => new KeyValuePair<string, object?>("mode", WireNames.Of(m)));
    private static readonly ConcurrentDictionary<string, KeyValuePair<string, object?>> Storages = new(StringComparer.Ordinal);

    private readonly Counter<long> _tokens, _transmissions, _failedTransmissions, _bytes, _gateDecisions, _evictions, _fallbacks;
    private readonly Histogram<double> _tokenLatency, _queueWait;
    private readonly Histogram<int> _batchSize;
    private readonly UpDownCounter<long> _sessions, _storedEntries, _storedBytes;
    private long _kvCacheBytes;
    private readonly ConcurrentDictionary<string, long> _devices = new(StringComparer.Ordinal); // device -> connected until (Stopwatch timestamp)

    public GrainMetrics(IMeterFactory factory)
    {
        var meter = factory.Create(SpaTelemetry.MeterName);
        _tokens = meter.CreateCounter<long>("spa_tokens_generated", description: "Tokens generated, by session mode.");
        _transmissions = meter.CreateCounter<long>("spa_edge_transmissions", description: "Round trips to edge devices that they answered, by session mode.");
        _failedTransmissions = meter.CreateCounter<long>("spa_edge_transmissions_failed",
            description: "Calls to edge devices that they did not answer (failed, timed out, or refused while offline), by session mode; not in spa_edge_transmissions.");
        _bytes = meter.CreateCounter<long>("spa_edge_bytes", description: "Bytes of activations sent to (up) and received from (down) edge devices.");
        _gateDecisions = meter.CreateCounter<long>("spa_gate_decisions", description: "The cloud gate's choices in gated modes.");
        _tokenLatency = meter.CreateHistogram("spa_token_latency", "s", "Time per generated token, by component.", advice: Seconds);
        _sessions = meter.CreateUpDownCounter<long>("spa_sessions_active", description: "Decoding sessions holding a generation in this silo.");
        meter.CreateObservableGauge("spa_kv_cache_bytes", () => Volatile.Read(ref _kvCacheBytes), description: "KV-cache bytes allocated by the shard grains of this silo.");
        _evictions = meter.CreateCounter<long>("spa_kv_cache_evictions", description: "Sessions that lost their KV-cache slot to another.");
        _batchSize = meter.CreateHistogram("spa_batch_size", description: "Steps per shard forward.", advice: BatchSizes);
        _queueWait = meter.CreateHistogram("spa_queue_wait", "s", "Time a step waits in a shard before its forward starts.", advice: Seconds);
        meter.CreateObservableGauge("spa_edge_devices_connected", CountDevices, description: "Edge devices of this silo that can answer now (connected or simulated).");
        _storedEntries = meter.CreateUpDownCounter<long>("spa_memory_storage_entries", description: "Entries in the memory grain storage of the one-process host, by storage (kept in this silo's partitions).");
        _storedBytes = meter.CreateUpDownCounter<long>("spa_memory_storage_bytes", description: "Serialized state bytes of those entries, without keys and versions.");
        _fallbacks = meter.CreateCounter<long>("spa_edge_fallbacks", description: "Times a generation went on without its plugin because the device was unavailable (as the responses' spa.fallbacks).");
        // Every series of a known label set exists from the start, so that rate() and absent() see zeros rather than gaps.
        foreach (var mode in Modes.Values)
        {
            _tokens.Add(0, mode);
            _transmissions.Add(0, mode);
            _failedTransmissions.Add(0, mode);
        }
        _bytes.Add(0, Up);
        _bytes.Add(0, Down);
        _gateDecisions.Add(0, ToEdge);
        _gateDecisions.Add(0, ToCloud);
        _evictions.Add(0);
        _fallbacks.Add(0);
    }

    /// <summary>
    /// One generated token: its mode, its round trips (answered and not) and their bytes, and where its time went
    /// (milliseconds).
    /// </summary>
    public void Token(SessionMode mode, EdgeUsage usage, double cloudMs)
    {
        var m = ModeTag(mode);
        _tokens.Add(1, m);
        _tokenLatency.Record((cloudMs + usage.EdgeMs + usage.NetworkMs) / 1000, Total);
        _tokenLatency.Record(cloudMs / 1000, Cloud);
        if (usage.Transmissions + usage.FailedTransmissions == 0) return; // a token without the device says nothing about the device's or the link's time
        _transmissions.Add(usage.Transmissions, m);
        _failedTransmissions.Add(usage.FailedTransmissions, m);
        _bytes.Add(usage.BytesUp, Up);
        _bytes.Add(usage.BytesDown, Down);
        _tokenLatency.Record(usage.EdgeMs / 1000, Edge);
        _tokenLatency.Record(usage.NetworkMs / 1000, Network);
    }

    public void GateDecision(bool edge) => _gateDecisions.Add(1, edge ? ToEdge : ToCloud);

    public void Fallback() => _fallbacks.Add(1);

    public void SessionStarted() => _sessions.Add(1);

    public void SessionEnded() => _sessions.Add(-1);

    /// <summary>A change to memory storage <paramref name="storage"/>: entries and serialized bytes added (negative: removed).</summary>
    public void MemoryStorageChanged(string storage, long entries, long bytes)
    {
        var tag = Storages.GetOrAdd(storage, s => new("storage", s));
        _storedEntries.Add(entries, tag);
        _storedBytes.Add(bytes, tag);
    }

    public void KvCacheAllocated(long bytes) => Interlocked.Add(ref _kvCacheBytes, bytes);

    public void Eviction() => _evictions.Add(1);

    /// <summary>One shard forward of <paramref name="batch"/> steps.</summary>
    public void Forward(int batch) => _batchSize.Record(batch);

    /// <summary>A step that waited since <paramref name="queuedAt"/> (a Stopwatch timestamp) for its forward.</summary>
    public void QueueWait(long queuedAt) => _queueWait.Record(Stopwatch.GetElapsedTime(queuedAt).TotalSeconds);

    /// <summary>The device can answer until <paramref name="until"/> (a Stopwatch timestamp; <see cref="long.MaxValue"/> while simulated).</summary>
    public void DeviceReachable(string device, long until) => _devices[device] = until;

    public void DeviceGone(string device) => _devices.TryRemove(device, out _);

    private int CountDevices()
    {
        long now = Stopwatch.GetTimestamp();
        int count = 0;
        foreach (var (_, until) in _devices) if (until > now) count++;
        return count;
    }

    private static KeyValuePair<string, object?> ModeTag(SessionMode mode) =>
        Modes.TryGetValue(mode, out var tag) ? tag : throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode");
}
