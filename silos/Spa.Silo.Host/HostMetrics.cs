using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Spa.Grains;

namespace Spa.Silo;

/// <summary>What the HTTP host counts on the meter <c>Spa</c> (<see cref="SpaTelemetry"/>): completions by status, time to first token, admission and idle-time memory trims.</summary>
public sealed class HostMetrics
{
    private static readonly ConcurrentDictionary<int, KeyValuePair<string, object?>> Statuses = new();
    private static readonly Dictionary<string, KeyValuePair<string, object?>> RefusalReasons =
        AdmissionRefusals.All.ToDictionary(r => r, r => new KeyValuePair<string, object?>("reason", r), StringComparer.Ordinal);

    private readonly Counter<long> _requests, _refusals, _memoryTrims, _memoryReleased;
    private readonly Histogram<double> _firstToken;
    private int _admittedRunning, _admittedQueued;
    private long _admittedKvBytes;

    public HostMetrics(IMeterFactory factory)
    {
        var meter = factory.Create(SpaTelemetry.MeterName);
        _firstToken = meter.CreateHistogram("spa_time_to_first_token", "s", "Time from an admitted HTTP completion's start to its first token.", advice: SpaTelemetry.Seconds);
        _requests = meter.CreateCounter<long>("spa_requests", description: "HTTP completions, by status code.");
        _refusals = meter.CreateCounter<long>("spa_admission_refusals", description: "HTTP completions refused with 429, by reason (kv_memory, queue_full, queue_timeout).");
        meter.CreateObservableGauge("spa_admission_running", () => Volatile.Read(ref _admittedRunning), description: "Generations admitted by this host's HTTP endpoint and running.");
        meter.CreateObservableGauge("spa_admission_queued", () => Volatile.Read(ref _admittedQueued), description: "HTTP completions waiting for a place to run.");
        meter.CreateObservableGauge("spa_admission_kv_bytes", () => Volatile.Read(ref _admittedKvBytes),
            description: "Estimated KV-cache bytes (on the largest shard) of the running and queued generations, which admission keeps under Spa:Model:KvCacheBytesPerShard.");
        _memoryTrims = meter.CreateCounter<long>("spa_memory_trims", description: "Times the idle host gave memory back to the operating system (compacting GC and malloc_trim).");
        _memoryReleased = meter.CreateCounter<long>("spa_memory_trim_released", description: "Resident bytes those trims gave back to the operating system.");
        // Every series of a known label set exists from the start, so that rate() and absent() see zeros rather than gaps.
        _memoryTrims.Add(0);
        _memoryReleased.Add(0);
    }

    public void TimeToFirstToken(TimeSpan elapsed) => _firstToken.Record(elapsed.TotalSeconds);

    public void Request(int status) => _requests.Add(1, Statuses.GetOrAdd(status, s => new("status", s.ToString(System.Globalization.CultureInfo.InvariantCulture))));

    /// <summary>A completion refused by admission control for <paramref name="reason"/> (one of <see cref="AdmissionRefusals.All"/>).</summary>
    public void AdmissionRefused(string reason) =>
        _refusals.Add(1, RefusalReasons.TryGetValue(reason, out var tag) ? tag : throw new ArgumentException($"unknown refusal reason '{reason}'", nameof(reason)));

    /// <summary>Admission's state after a change: generations running, waiting, and their estimated KV bytes.</summary>
    public void Admission(int running, int queued, long kvBytes)
    {
        Volatile.Write(ref _admittedRunning, running);
        Volatile.Write(ref _admittedQueued, queued);
        Volatile.Write(ref _admittedKvBytes, kvBytes);
    }

    /// <summary>An idle-time memory trim that lowered the resident set by <paramref name="releasedBytes"/> (0 when it did not).</summary>
    public void MemoryTrimmed(long releasedBytes)
    {
        _memoryTrims.Add(1);
        _memoryReleased.Add(Math.Max(0, releasedBytes));
    }
}

/// <summary>Why admission control refuses a completion: the bounded label values of spa_admission_refusals_total.</summary>
public static class AdmissionRefusals
{
    /// <summary>The running and queued generations' KV-cache estimate would exceed the shard budget.</summary>
    public const string KvMemory = "kv_memory";

    /// <summary>Every place is taken and the wait queue is full.</summary>
    public const string QueueFull = "queue_full";

    /// <summary>The request waited in the queue for Spa:Serving:QueueTimeoutMs without getting a place.</summary>
    public const string QueueTimeout = "queue_timeout";

    public static readonly string[] All = [KvMemory, QueueFull, QueueTimeout];
}
