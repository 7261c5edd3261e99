using Spa.Grains.Abstractions;

namespace Spa.Grains;

/// <summary>
/// Round trips to one device and what they cost: their count, the bytes they carried (fp32), the device's compute time
/// and the rest of their time (the network's), the calls the device did not answer (counted apart, their wait as the
/// network's), and the first failure, which marks the work degraded. A session keeps
/// one per token (its own side steps plus the shards' calls); a shard keeps one per row of a split-plugin forward.
/// Each round trip is also kept, for the trace, when the counter was made for a traced step.
/// </summary>
public sealed class EdgeCounter(bool recordRoundTrips = false)
{
    private readonly List<EdgeRoundTrip>? _roundTrips = recordRoundTrips ? [] : null;

    public long Transmissions { get; private set; }
    public long FailedTransmissions { get; private set; }
    public long BytesUp { get; private set; }
    public long BytesDown { get; private set; }
    public double EdgeMs { get; private set; }
    public double NetworkMs { get; private set; }
    public bool Degraded => Failure is not null;
    public string? Failure { get; private set; }

    /// <summary>Each round trip so far; null when the counter does not record them.</summary>
    public IReadOnlyList<EdgeRoundTrip>? RoundTrips => _roundTrips;

    /// <summary>One <paramref name="kind"/> round trip that took <paramref name="elapsedMs"/>, of which the device computed <paramref name="edgeMs"/>.</summary>
    public void Add(EdgeCallKind kind, int layer, long up, long down, double edgeMs, double elapsedMs)
    {
        double networkMs = Math.Max(0, elapsedMs - edgeMs);
        Transmissions++;
        BytesUp += up;
        BytesDown += down;
        EdgeMs += edgeMs;
        NetworkMs += networkMs;
        _roundTrips?.Add(new EdgeRoundTrip(kind, layer, up, down, edgeMs, networkMs));
    }

    /// <summary>A call the device did not answer after <paramref name="elapsedMs"/>: the work is degraded, and the wait was the network's.</summary>
    public void Fail(double elapsedMs, string failure)
    {
        FailedTransmissions++;
        NetworkMs += elapsedMs;
        Degrade(failure);
    }

    public void Add(EdgeUsage usage)
    {
        Transmissions += usage.Transmissions;
        FailedTransmissions += usage.FailedTransmissions;
        BytesUp += usage.BytesUp;
        BytesDown += usage.BytesDown;
        EdgeMs += usage.EdgeMs;
        NetworkMs += usage.NetworkMs;
        if (usage.RoundTrips is not null) _roundTrips?.AddRange(usage.RoundTrips);
        if (usage.Degraded) Degrade(usage.Failure ?? "a shard's call to the device failed");
    }

    /// <summary>Marks the work degraded; the first failure is the one reported.</summary>
    public void Degrade(string failure) => Failure ??= failure;

    public EdgeUsage ToUsage() => new(Transmissions, BytesUp, BytesDown, EdgeMs, NetworkMs, Degraded, Failure, _roundTrips?.ToArray(), FailedTransmissions);
}
