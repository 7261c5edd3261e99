using System.Diagnostics;
using Spa.Grains.Abstractions;

namespace Spa.LoadTest;

/// <summary>
/// One request as the load tester saw it. Times are milliseconds; <see cref="TokenMs"/> holds every generated token's
/// latency: the first token's from the call to its arrival (the time to first token), each later one's from the
/// previous token's arrival. <see cref="Status"/> is the session's own account (tokens, round trips, where the time
/// went); null when the request failed.
/// </summary>
public sealed record RequestSample(DeviceGroup? Group, bool Measured, float[] TokenMs, GenerationResult? Status, string? Error)
{
    /// <summary>Which of the run's prompts it sent; -1 for a request that never started.</summary>
    public int Prompt { get; init; } = -1;

    /// <summary>The tokens as they arrived, in order.</summary>
    public int[] Delivered { get; init; } = [];

    /// <summary>When the request was sent and when it ended (its session released after its last token or error), as Stopwatch timestamps.</summary>
    public long StartedAt { get; init; }

    public long EndedAt { get; init; }

    /// <summary>How often its stream broke with a silo loss and was resumed from the tokens already received.</summary>
    public int Resumes { get; init; }

    public int Tokens => TokenMs.Length;
    public double TotalMs => TokenMs.Sum(t => (double)t);

    /// <summary>Each token's arrival as a Stopwatch timestamp.</summary>
    public long[] Arrivals()
    {
        var arrivals = new long[TokenMs.Length];
        double ms = 0;
        for (int i = 0; i < arrivals.Length; i++)
        {
            ms += TokenMs[i];
            arrivals[i] = StartedAt + (long)(ms * Stopwatch.Frequency / 1000);
        }
        return arrivals;
    }
}

/// <summary>
/// The requests of one mode, recorded as they finish (any thread), and tokens counted per second of the run as they
/// arrive, for the throughput over time. Requests started in the warm-up are kept apart: they count toward nothing.
/// </summary>
public sealed class ModeRecorder(SessionMode mode)
{
    private readonly Lock _lock = new();
    private readonly List<RequestSample> _samples = [];
    private readonly List<int> _tokensPerSecond = [];
    private readonly Dictionary<string, int> _errors = [];

    public SessionMode Mode { get; } = mode;

    public void Token(double secondsSinceStart)
    {
        int second = (int)secondsSinceStart;
        lock (_lock)
        {
            while (_tokensPerSecond.Count <= second) _tokensPerSecond.Add(0);
            _tokensPerSecond[second]++;
        }
    }

    public void Add(RequestSample sample)
    {
        lock (_lock)
        {
            _samples.Add(sample);
            if (sample.Measured && sample.Error is { } error) _errors[error] = _errors.GetValueOrDefault(error) + 1;
        }
    }

    /// <summary>A request that could not start (an open-loop arrival that found no idle device).</summary>
    public void Refused(string reason) => Add(new RequestSample(null, true, [], null, reason));

    /// <summary>Every request, those of the warm-up included.</summary>
    public IReadOnlyList<RequestSample> All
    {
        get
        {
            lock (_lock) return [.. _samples];
        }
    }

    public IReadOnlyList<RequestSample> Measured
    {
        get
        {
            lock (_lock) return [.. _samples.Where(s => s.Measured)];
        }
    }

    public IReadOnlyDictionary<string, int> Errors
    {
        get
        {
            lock (_lock) return new Dictionary<string, int>(_errors);
        }
    }

    public int[] TokensEachSecond
    {
        get
        {
            lock (_lock) return [.. _tokensPerSecond];
        }
    }

    /// <summary>Tokens that arrived in the seconds [from, to) of the run.</summary>
    public long TokensBetween(int from, int to)
    {
        lock (_lock) return _tokensPerSecond.Skip(from).Take(Math.Max(0, to - from)).Sum(n => (long)n);
    }
}

/// <summary>Percentiles by the nearest-rank rule over sorted values.</summary>
public static class Percentiles
{
    public static double Of(IReadOnlyList<float> sorted, double percent) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(percent / 100 * sorted.Count) - 1, 0, sorted.Count - 1)];

    public static float[] Sorted(IEnumerable<float> values)
    {
        var array = values.ToArray();
        Array.Sort(array);
        return array;
    }
}
