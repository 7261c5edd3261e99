using Microsoft.Extensions.Options;

namespace Spa.Silo;

/// <summary>How much the HTTP host takes on. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class ServingOptions
{
    public const string Section = "Spa:Serving";

    /// <summary>
    /// Generations this host runs at once; more are refused with 429 rather than queued, so that memory and latency
    /// stay bounded (each holds a KV-cache slot on every shard while it runs).
    /// </summary>
    public int MaxConcurrentGenerations { get; set; } = 128;

    /// <summary>The Retry-After a refused request gets.</summary>
    public int RetryAfterSeconds { get; set; } = 1;
}

/// <summary>Admission control: a count of running generations under <see cref="ServingOptions.MaxConcurrentGenerations"/>.</summary>
public sealed class Admission(IOptions<ServingOptions> options)
{
    private int _running;

    public int Limit { get; } = options.Value.MaxConcurrentGenerations > 0 ? options.Value.MaxConcurrentGenerations
        : throw new ArgumentException($"{ServingOptions.Section}:MaxConcurrentGenerations must be positive, got {options.Value.MaxConcurrentGenerations}");

    public int RetryAfterSeconds { get; } = Math.Max(1, options.Value.RetryAfterSeconds);

    public int Running => Volatile.Read(ref _running);

    /// <summary>A place for one generation (dispose it when the generation ends), or null when the host is full.</summary>
    public IDisposable? TryEnter()
    {
        if (Interlocked.Increment(ref _running) <= Limit) return new Place(this);
        Interlocked.Decrement(ref _running);
        return null;
    }

    private sealed class Place(Admission admission) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0) Interlocked.Decrement(ref admission._running);
        }
    }
}
