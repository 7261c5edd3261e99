using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Spa.Grains.Abstractions;
using Spa.Grains.Shards;

namespace Spa.Grains.Tests;

/// <summary>
/// How a shard's steps are batched, without a cluster or a model: the forward is a function that records the sessions
/// of each group. Every test runs as a reentrant grain's turns run, one at a time on one scheduler.
/// </summary>
public sealed class StepBatcherTests
{
    // A window no test can wait out: a step that is not sent on for a reason other than the window hangs its test.
    private const double Hour = 3_600_000;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    [Fact]
    public Task ALoneSessionsStepIsNotHeldForTheWindow() => InTurns(async () =>
    {
        using var shard = new Shard();
        var result = await shard.Step("a").WaitAsync(Patience);

        Assert.Equal([["a"]], shard.Groups);
        Assert.Equal(shard.Slots.Acquire("a"), (int)result.Logits![0]);
    });

    [Fact]
    public Task StepsOfSessionsThatSteppedRecentlyRunAsOneForward() => InTurns(async () =>
    {
        using var shard = new Shard();
        foreach (var s in new[] { "a", "b", "c" }) shard.Batcher.Stepped(s);
        var a = shard.Step("a");
        var b = shard.Step("b");
        var c = shard.Step("c");
        var results = await Task.WhenAll(a, b, c).WaitAsync(Patience);

        Assert.Equal([["a", "b", "c"]], shard.Groups);
        Assert.Equal([0f, 1f, 2f], results.Select(r => r.Logits![0]));
        Assert.Equal((1L, 3, 3.0), (shard.Batcher.Forwards, shard.Batcher.LargestBatch, shard.Batcher.MeanBatch));
    });

    [Fact]
    public Task ASessionThatIsDoneIsNotWaitedFor() => InTurns(async () =>
    {
        using var shard = new Shard();
        shard.Batcher.Stepped("b");
        shard.Batcher.Forget("b");
        await shard.Step("a").WaitAsync(Patience);

        Assert.Equal([["a"]], shard.Groups);
    });

    [Fact]
    public Task ABatchGoesOnceItHoldsMaxBatchSteps() => InTurns(async () =>
    {
        using var shard = new Shard(maxBatch: 2);
        shard.Hold.Reset();
        foreach (var s in new[] { "a", "b", "c", "d" }) shard.Batcher.Stepped(s);
        var first = new[] { shard.Step("a"), shard.Step("b") };
        await shard.ForwardStarted.Task.WaitAsync(Patience);
        Assert.True(shard.Slots.IsPinned("a"));
        var second = new[] { shard.Step("c"), shard.Step("d") };
        shard.Hold.Set();
        await Task.WhenAll([.. first, .. second]).WaitAsync(Patience);

        Assert.Equal([["a", "b"], ["c", "d"]], shard.Groups);
        Assert.Equal((2L, 2, 2.0), (shard.Batcher.Forwards, shard.Batcher.LargestBatch, shard.Batcher.MeanBatch));
        Assert.False(shard.Slots.IsPinned("a"));
    });

    [Fact]
    public Task OnlyStepsWithTheSameNumberOfNewPositionsAndNoSplitPluginRunTogether() => InTurns(async () =>
    {
        using var shard = new Shard();
        foreach (var s in new[] { "a", "b", "c", "d" }) shard.Batcher.Stepped(s);
        var steps = new[]
        {
            shard.Step("a", count: 1),
            shard.Step("b", count: 3),
            shard.Step("c", count: 1),
            shard.Step("d", count: 1, edge: new SplitEdge("phone", SessionMode.Lora)),
        };
        await Task.WhenAll(steps).WaitAsync(Patience);

        Assert.Equal([["a", "c"], ["b"], ["d"]], shard.Groups);
        Assert.Equal((3L, 2), (shard.Batcher.Forwards, shard.Batcher.LargestBatch));
    });

    [Fact]
    public Task AStepWaitingForASlotSendsTheFormingBatchOn() => InTurns(async () =>
    {
        using var shard = new Shard(slots: 2);
        shard.Hold.Reset();
        var a = shard.Step("a"); // alone: it goes at once, and its forward waits on the torch worker
        await shard.ForwardStarted.Task.WaitAsync(Patience);
        shard.Batcher.Stepped("c");
        var b = shard.Step("b"); // would wait for c, whose step finds both slots pinned
        Assert.Equal(-1, shard.Slots.Acquire("c"));

        var aForwardEnded = shard.Batcher.FlushAndWaitForAForward();
        shard.Hold.Set();
        await aForwardEnded.WaitAsync(Patience);
        await Task.WhenAll(a, b).WaitAsync(Patience);

        Assert.Equal([["a"], ["b"]], shard.Groups);
        Assert.Equal(0, shard.Slots.Acquire("c"));
        Assert.Equal(1L, shard.Slots.Evictions);
    });

    [Fact]
    public Task AFailedForwardFailsEachOfItsStepsAndUnpinsTheirSessions() => InTurns(async () =>
    {
        var failure = new InvalidOperationException("the forward failed");
        using var shard = new Shard(failure: failure);
        shard.Batcher.Stepped("a");
        shard.Batcher.Stepped("b");
        var steps = new[] { shard.Step("a"), shard.Step("b") };

        foreach (var step in steps)
            Assert.Same(failure, await Assert.ThrowsAsync<InvalidOperationException>(() => step.WaitAsync(Patience)));
        Assert.False(shard.Slots.IsPinned("a") || shard.Slots.IsPinned("b"));
        Assert.Equal(1L, shard.Batcher.Forwards);
    });

    /// <summary>
    /// Runs <paramref name="test"/> as the turns of a reentrant grain run: one at a time, every continuation back on
    /// one scheduler, the forward alone on the torch worker.
    /// </summary>
    private static Task InTurns(Func<Task> test) =>
        Task.Factory.StartNew(test, CancellationToken.None, TaskCreationOptions.DenyChildAttach,
            new ConcurrentExclusiveSchedulerPair().ExclusiveScheduler).Unwrap();

    /// <summary>
    /// A batcher over a slot table whose forward records the sessions of each group and answers each step with its
    /// slot (as its one logit), or with <c>failure</c>. While <see cref="Hold"/> is reset, a forward waits on the torch
    /// worker.
    /// </summary>
    private sealed class Shard : IDisposable
    {
        private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        private readonly ConcurrentQueue<string[]> _groups = new();
        private readonly Exception? _failure;

        public Shard(int slots = 4, int maxBatch = 64, Exception? failure = null)
        {
            _failure = failure;
            Slots = new KvSlotTable(slots, _ => 0, () => { });
            var options = new SpaModelOptions { BatchWindowMs = Hour, MaxBatch = maxBatch };
            Batcher = new StepBatcher(TorchWorker.Shared, options, Slots, Forward, new GrainMetrics(_services.GetRequiredService<IMeterFactory>()));
        }

        public KvSlotTable Slots { get; }
        public StepBatcher Batcher { get; }
        public ManualResetEventSlim Hold { get; } = new(initialState: true);
        public TaskCompletionSource ForwardStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The sessions of each forward, in the order the forwards ran.</summary>
        public string[][] Groups => [.. _groups];

        /// <summary>A step of <paramref name="count"/> new positions from the sequence's start, as the grain makes it.</summary>
        public Task<ShardStepResult> Step(string session, int count = 1, SplitEdge? edge = null)
        {
            Batcher.Stepped(session);
            var request = new ShardStepRequest(session, 0, count, new int[count], null, Edge: edge);
            return Batcher.Submit(new SlottedStep(request, Slots.Acquire(session), count));
        }

        private ShardStepResult[] Forward(SlottedStep[] group)
        {
            _groups.Enqueue([.. group.Select(s => s.Request.SessionId)]);
            ForwardStarted.TrySetResult();
            Hold.Wait(Patience);
            if (_failure is not null) throw _failure;
            return [.. group.Select(s => new ShardStepResult(false, null, [s.Slot]))];
        }

        public void Dispose()
        {
            Hold.Set(); // a failed test must not leave the shared torch worker waiting
            _services.Dispose();
        }
    }
}
