using System.Diagnostics;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Shards;

/// <summary>
/// Collects a shard's concurrent steps of different sessions into batches and runs them on the torch worker. The first
/// step of a batch opens a collection window of <see cref="SpaModelOptions.BatchWindowMs"/>; the batch goes when the
/// window ends, when it holds <see cref="MaxBatch"/> steps, or as soon as every session that stepped here recently (and
/// is not in a forward already) is in it, so that a lone session never waits. Steps with the same number of new
/// positions run as one forward over their cache slots (no padding: a row's result does not depend on the others, so
/// the tokens are those of unbatched decoding). A step's session is pinned in the <see cref="KvSlotTable"/> from the
/// moment it joins a batch until its forward ends.
/// <para>
/// The shard grain is reentrant, but its turns run one at a time and every continuation here resumes on its scheduler:
/// this state is only touched from grain turns, so it needs no locks. Only the forward runs on the torch worker.
/// </para>
/// </summary>
internal sealed class StepBatcher(TorchWorker worker, SpaModelOptions options, KvSlotTable slots,
    Func<SlottedStep[], ShardStepResult[]> forward, GrainMetrics metrics)
{
    /// <summary>A session that stepped within this time is expected to step again soon; a batch waits for it.</summary>
    private static readonly long ActiveHorizon = Stopwatch.Frequency; // one second

    private readonly Dictionary<string, long> _lastStep = new(StringComparer.Ordinal); // session -> Stopwatch timestamp
    private List<PendingStep> _pending = [];
    private TaskCompletionSource? _wake; // wakes the batch being collected to look at it again
    private bool _forceFlush; // a step waits for a slot: the batch being collected goes now
    private TaskCompletionSource _batchEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _inForward; // steps handed to the torch worker and not yet answered
    private long _forwardedSteps;

    private sealed record PendingStep(SlottedStep Step, TaskCompletionSource<ShardStepResult> Done, long QueuedAt);

    /// <summary>The most steps that end a collection: <see cref="SpaModelOptions.MaxBatch"/>, at most one per slot.</summary>
    public int MaxBatch => Math.Max(1, Math.Min(options.MaxBatch, slots.Slots));

    /// <summary>Forwards run, each over the steps of one or more sessions.</summary>
    public long Forwards { get; private set; }

    /// <summary>The most steps one forward ran.</summary>
    public int LargestBatch { get; private set; }

    /// <summary>The mean steps per forward (0 before the first).</summary>
    public double MeanBatch => Forwards == 0 ? 0 : (double)_forwardedSteps / Forwards;

    /// <summary>The session stepped here: for a while, a forming batch waits for its next step.</summary>
    public void Stepped(string session) => _lastStep[session] = Stopwatch.GetTimestamp();

    /// <summary>The session is done here: batches no longer wait for it.</summary>
    public void Forget(string session) => _lastStep.Remove(session);

    /// <summary>
    /// Adds the step to the forming batch, or opens one, and completes with its result, or with the exception of its
    /// forward.
    /// </summary>
    public Task<ShardStepResult> Submit(SlottedStep step)
    {
        var pending = new PendingStep(step, new TaskCompletionSource<ShardStepResult>(TaskCreationOptions.RunContinuationsAsynchronously),
            Stopwatch.GetTimestamp());
        slots.Pin(step.Request.SessionId);
        _pending.Add(pending);
        if (_pending.Count == 1) _ = CollectAndRun(); // opens the window; it runs until its first wait
        else _wake?.TrySetResult();
        return pending.Done.Task;
    }

    /// <summary>
    /// For a step that found every slot pinned: sends the forming batch on at once and completes when the next forward
    /// ends, which unpins its sessions.
    /// </summary>
    public Task FlushAndWaitForAForward()
    {
        if (_pending.Count > 0) { _forceFlush = true; _wake?.TrySetResult(); }
        return _batchEnded.Task;
    }

    /// <summary>True when the forming batch should go now: it is full, or no session expected to join it is missing.</summary>
    private bool BatchIsComplete()
    {
        if (_pending.Count >= MaxBatch) return true;
        long now = Stopwatch.GetTimestamp();
        int expected = 0;
        List<string>? stale = null;
        foreach (var (session, at) in _lastStep)
        {
            if (now - at <= ActiveHorizon) expected++;
            else (stale ??= []).Add(session);
        }
        if (stale is not null) foreach (var s in stale) _lastStep.Remove(s);
        return _pending.Count >= expected - _inForward;
    }

    /// <summary>
    /// Collects the batch the first pending step opened, then runs it. While the torch worker is busy (with this
    /// shard's forward or another shard's: all shards of a process share it), the batch keeps collecting, since it could
    /// not run earlier anyway, and then gives the sessions a window to join once the worker is free, so that sessions
    /// that fell into different batches, here or at other shards, merge again. It goes at once when every expected
    /// session is in, when full, or when slots run out.
    /// </summary>
    private async Task CollectAndRun()
    {
        var window = TimeSpan.FromMilliseconds(Math.Max(0, options.BatchWindowMs));
        long Deadline() => Stopwatch.GetTimestamp() + (long)(window.TotalSeconds * Stopwatch.Frequency);
        var deadline = Deadline();
        Task? delay = null;
        while (!_forceFlush && _pending.Count < MaxBatch)
        {
            if (_inForward == 0 && BatchIsComplete()) break;
            bool busy = _inForward > 0 || worker.IsBusy;
            long now = Stopwatch.GetTimestamp();
            if (!busy && now >= deadline) break;
            var wake = _wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (busy)
            {
                // This shard's forward ends its batch; another shard's work ends when the worker is idle.
                await Task.WhenAny(wake.Task, _inForward > 0 ? _batchEnded.Task : worker.WhenIdle());
                if (_inForward == 0 && !worker.IsBusy) (deadline, delay) = (Deadline(), null);
            }
            else
            {
                delay ??= Task.Delay(TimeSpan.FromSeconds((double)(deadline - now) / Stopwatch.Frequency));
                await Task.WhenAny(wake.Task, delay);
            }
        }
        _wake = null;
        _forceFlush = false;
        var batch = _pending;
        _pending = [];
        _inForward += batch.Count;
        // One forward per number of new positions: decode steps together, a prefill or replay with its equals.
        // Sessions with a split plugin run apart: their forward waits on their devices.
        foreach (var group in batch.GroupBy(p => (p.Step.Count, p.Step.Request.Edge is not null)))
            await RunForward([.. group]);
    }

    /// <summary>Runs one group on the torch worker; its sessions leave the batch before they get their answers.</summary>
    private async Task RunForward(PendingStep[] group)
    {
        Forwards++;
        _forwardedSteps += group.Length;
        LargestBatch = Math.Max(LargestBatch, group.Length);
        metrics.Forward(group.Length);
        foreach (var p in group) metrics.QueueWait(p.QueuedAt);
        SlottedStep[] steps = [.. group.Select(p => p.Step)];
        ShardStepResult[]? results = null;
        Exception? failure = null;
        long handedOver = Stopwatch.GetTimestamp(), forwardStarted = 0, forwardEnded = 0;
        try
        {
            results = await worker.Run(() =>
            {
                forwardStarted = Stopwatch.GetTimestamp();
                var answers = forward(steps);
                forwardEnded = Stopwatch.GetTimestamp();
                return answers;
            });
        }
        catch (Exception e)
        {
            failure = e;
        }
        long returned = Stopwatch.GetTimestamp();
        _inForward -= group.Length;
        foreach (var p in group) slots.Unpin(p.Step.Request.SessionId);
        var ended = _batchEnded;
        _batchEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ended.SetResult();
        for (int i = 0; i < group.Length; i++)
        {
            if (results is not null) group[i].Done.TrySetResult(group[i].Step.Request.SentAt == 0 ? results[i]
                : results[i] with { Timings = new ShardTimings(0, group[i].QueuedAt, handedOver, forwardStarted, forwardEnded, returned, 0) });
            else group[i].Done.TrySetException(failure!);
        }
    }
}
