using Microsoft.Extensions.Options;
using Spa.Grains;

namespace Spa.Silo;

/// <summary>How much the HTTP host takes on. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class ServingOptions
{
    public const string Section = "Spa:Serving";

    /// <summary>Generations this host runs at once (each holds a KV-cache slot on every shard while it runs).</summary>
    public int MaxConcurrentGenerations { get; set; } = 128;

    /// <summary>Completions that may wait for a place when all are taken; more are refused with 429 at once.</summary>
    public int MaxQueuedGenerations { get; set; } = 64;

    /// <summary>How long a completion waits in the queue for a place before it is refused with 429.</summary>
    public double QueueTimeoutMs { get; set; } = 5000;

    /// <summary>The Retry-After a refused request gets.</summary>
    public int RetryAfterSeconds { get; set; } = 1;
}

/// <summary>
/// Admission control of the HTTP host, bounded three ways: generations running (<see cref="ServingOptions.MaxConcurrentGenerations"/>),
/// completions waiting in a first-come-first-served queue (<see cref="ServingOptions.MaxQueuedGenerations"/>, each
/// for at most <see cref="ServingOptions.QueueTimeoutMs"/>), and KV memory: a generation is estimated at the KV-cache
/// bytes its prompt and token budget fill on the largest shard, and the estimates of running and queued generations
/// together stay within the shard's budget (<see cref="SpaModelOptions.KvCacheBytesPerShard"/>), so that admitted
/// sessions do not evict each other's caches. A completion that would break a bound is refused (429 + Retry-After)
/// before it costs anything; one alone on an idle host is always admitted.
/// </summary>
public sealed class Admission
{
    private readonly object _lock = new();
    private readonly LinkedList<Waiter> _queue = new();
    private readonly HostMetrics _metrics;
    private int _running;
    private long _kvBytes;

    public Admission(IOptions<ServingOptions> serving, IOptions<SpaModelOptions> model, HostMetrics metrics)
    {
        var o = serving.Value;
        Limit = o.MaxConcurrentGenerations > 0 ? o.MaxConcurrentGenerations
            : throw new ArgumentException($"{ServingOptions.Section}:MaxConcurrentGenerations must be positive, got {o.MaxConcurrentGenerations}");
        QueueLimit = o.MaxQueuedGenerations >= 0 ? o.MaxQueuedGenerations
            : throw new ArgumentException($"{ServingOptions.Section}:MaxQueuedGenerations must not be negative, got {o.MaxQueuedGenerations}");
        QueueTimeout = o.QueueTimeoutMs is >= 0 and <= 600_000 ? TimeSpan.FromMilliseconds(o.QueueTimeoutMs)
            : throw new ArgumentException($"{ServingOptions.Section}:QueueTimeoutMs must be from 0 to 600000, got {o.QueueTimeoutMs}");
        KvBudget = model.Value.KvCacheBytesPerShard > 0 ? model.Value.KvCacheBytesPerShard
            : throw new ArgumentException($"{SpaModelOptions.Section}:KvCacheBytesPerShard must be positive, got {model.Value.KvCacheBytesPerShard}");
        RetryAfterSeconds = Math.Max(1, o.RetryAfterSeconds);
        _metrics = metrics;
    }

    public int Limit { get; }
    public int QueueLimit { get; }
    public TimeSpan QueueTimeout { get; }
    public long KvBudget { get; }
    public int RetryAfterSeconds { get; }

    /// <summary>
    /// A place for a generation estimated at <paramref name="kvBytes"/> (dispose it when the generation ends), after a
    /// wait in the queue if every place is taken; or the reason it is refused (one of <see cref="AdmissionRefusals"/>).
    /// </summary>
    public async Task<(IDisposable? Place, string? Refusal)> EnterAsync(long kvBytes, CancellationToken aborted)
    {
        Waiter waiter;
        lock (_lock)
        {
            if (_kvBytes + kvBytes > KvBudget && (_running > 0 || _queue.Count > 0)) return Refuse(AdmissionRefusals.KvMemory);
            if (_running < Limit && _queue.Count == 0) return (Admit(kvBytes), null);
            if (_queue.Count >= QueueLimit) return Refuse(AdmissionRefusals.QueueFull);
            waiter = new Waiter(kvBytes);
            waiter.Node = _queue.AddLast(waiter);
            _kvBytes += kvBytes;
            Publish();
        }
        try
        {
            return (await waiter.Place.Task.WaitAsync(QueueTimeout, aborted), null);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            lock (_lock)
            {
                // A place given just as the wait ended is taken: the caller gets it, or gives it back if the client left.
                if (waiter.Node!.List is null)
                {
                    if (e is OperationCanceledException) waiter.Place.Task.Result.Dispose();
                    else return (waiter.Place.Task.Result, null);
                }
                else
                {
                    _queue.Remove(waiter.Node);
                    _kvBytes -= kvBytes;
                    Publish();
                }
            }
            if (e is OperationCanceledException) throw;
            return Refuse(AdmissionRefusals.QueueTimeout);
        }
    }

    /// <summary>What a refused client is told, in one line.</summary>
    public string Describe(string refusal) => refusal switch
    {
        AdmissionRefusals.KvMemory => $"the running and waiting generations would need more KV-cache memory than the {KvBudget} bytes per shard this host has",
        AdmissionRefusals.QueueFull => $"the server is at capacity ({Limit} generations at once, {QueueLimit} waiting)",
        _ => $"no place to run became free within {QueueTimeout.TotalMilliseconds:0} ms ({Limit} generations at once)",
    };

    private (IDisposable?, string?) Refuse(string reason)
    {
        _metrics.AdmissionRefused(reason);
        return (null, reason);
    }

    /// <summary>Under the lock: a place for a generation not yet counted.</summary>
    private Place Admit(long kvBytes)
    {
        _running++;
        _kvBytes += kvBytes;
        Publish();
        return new Place(this, kvBytes);
    }

    private void Leave(long kvBytes)
    {
        lock (_lock)
        {
            _running--;
            _kvBytes -= kvBytes;
            // The head of the queue takes the freed place; its bytes are counted already.
            if (_queue.First is { } next && _running < Limit)
            {
                _queue.RemoveFirst();
                _running++;
                next.Value.Place.SetResult(new Place(this, next.Value.KvBytes));
            }
            Publish();
        }
    }

    private void Publish() => _metrics.Admission(_running, _queue.Count, _kvBytes);

    private sealed class Waiter(long kvBytes)
    {
        public long KvBytes => kvBytes;
        public LinkedListNode<Waiter>? Node { get; set; }
        public TaskCompletionSource<IDisposable> Place { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class Place(Admission admission, long kvBytes) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0) admission.Leave(kvBytes);
        }
    }
}
