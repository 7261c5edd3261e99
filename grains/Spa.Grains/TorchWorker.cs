using System.Collections.Concurrent;

namespace Spa.Grains;

/// <summary>
/// A dedicated thread that runs torch work one item at a time, so that no tensor operation runs on the Orleans
/// scheduler (a grain awaits the returned task; its continuation goes back to the grain's scheduler). One per process for the base model (and one for simulated devices):
/// with one accelerator, forwards run one after another anyway, and torch objects stay on one thread.
/// </summary>
public sealed class TorchWorker
{
    private readonly BlockingCollection<Action> _queue = [];
    private readonly Lock _idleLock = new();
    private int _busy; // items queued or running
    private long _submitted;
    private TaskCompletionSource _idle = Done();

    [ThreadStatic] private static bool _onWorker;

    /// <summary>True on a torch worker's thread; tensor code checks it so that it never runs on the Orleans scheduler.</summary>
    public static bool OnWorkerThread => _onWorker;

    public static TorchWorker Shared { get; } = new("spa-torch");

    /// <summary>
    /// The thread of simulated devices' plugins: a device is another machine, and a shard forward of a split plugin
    /// (lora, adapter) waits on the shared worker for the device's answer, which must not queue behind it.
    /// </summary>
    public static TorchWorker Edge { get; } = new("spa-edge");

    private TorchWorker(string name)
    {
        var thread = new Thread(Loop) { IsBackground = true, Name = name };
        thread.Start();
    }

    /// <summary>True while work is queued or running.</summary>
    public bool IsBusy => Volatile.Read(ref _busy) > 0;

    /// <summary>Items of work given to this worker since the process started: unchanged over a time, no work came in it.</summary>
    public long Submitted => Interlocked.Read(ref _submitted);

    /// <summary>Completes when no work is queued or running (at once when idle now).</summary>
    public Task WhenIdle()
    {
        lock (_idleLock) return _idle.Task;
    }

    public Task<T> Run<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Interlocked.Increment(ref _submitted);
        lock (_idleLock)
            if (_busy++ == 0) _idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Add(() =>
        {
            try { done.SetResult(work()); }
            catch (Exception e) { done.SetException(e); }
            finally
            {
                lock (_idleLock)
                    if (--_busy == 0) _idle.SetResult();
            }
        });
        return done.Task;
    }

    private static TaskCompletionSource Done()
    {
        var idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        idle.SetResult();
        return idle;
    }

    public Task Run(Action work) => Run(() => { work(); return true; });

    private void Loop()
    {
        _onWorker = true;
        foreach (var work in _queue.GetConsumingEnumerable()) work();
    }
}
