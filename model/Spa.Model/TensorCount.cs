using TorchSharp;

namespace Spa.Model;

/// <summary>
/// Tensors created and still alive, from TorchSharp's dispose-scope statistics, which it keeps per thread. Every
/// native call that returns a tensor creates one, so the created count is the number of such calls (in-place
/// operations and calls returning no tensor are not counted); the live count growing over many steps is a leak.
/// </summary>
public readonly record struct TensorCount(long Created, long Live)
{
    private static readonly ThreadLocal<ThreadDisposeScopeStatistics> Counted = new(() => DisposeScopeManager.Statistics, trackAllValues: true);

    public static TensorCount OnThisThread() => Of(DisposeScopeManager.Statistics);

    /// <summary>
    /// Adds the calling thread to those <see cref="OnCountedThreads"/> sums: a thread that steps part of a batch
    /// (<see cref="LlamaModel.Step"/> spreads a large one over the cores) calls it, so that the part's tensors count.
    /// </summary>
    public static void CountThisThread() => _ = Counted.Value;

    /// <summary>
    /// The sum over the calling thread and every thread that called <see cref="CountThisThread"/>. A tensor created on
    /// one of them and disposed on another leaves the sum's live count as it was. Read it while none of them works.
    /// </summary>
    public static TensorCount OnCountedThreads()
    {
        CountThisThread();
        long created = 0, live = 0;
        foreach (var thread in Counted.Values)
        {
            var count = Of(thread);
            created += count.Created;
            live += count.Live;
        }
        return new(created, live);
    }

    private static TensorCount Of(ThreadDisposeScopeStatistics thread)
    {
        var statistics = thread.TensorStatistics;
        return new(statistics.CreatedInScopeCount + statistics.CreatedOutsideScopeCount, statistics.ThreadTotalLiveCount);
    }

    public static TensorCount operator -(TensorCount after, TensorCount before) =>
        new(after.Created - before.Created, after.Live - before.Live);
}
