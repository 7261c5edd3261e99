using TorchSharp;

namespace Spa.Model;

/// <summary>
/// Tensors created and still alive on the calling thread, from TorchSharp's dispose-scope statistics. Every native
/// call that returns a tensor creates one, so the created count is the number of such calls (in-place operations and
/// calls returning no tensor are not counted); the live count growing over many steps is a leak.
/// </summary>
public readonly record struct TensorCount(long Created, long Live)
{
    public static TensorCount OnThisThread()
    {
        var statistics = DisposeScopeManager.Statistics.TensorStatistics;
        return new(statistics.CreatedInScopeCount + statistics.CreatedOutsideScopeCount, statistics.ThreadTotalLiveCount);
    }

    public static TensorCount operator -(TensorCount after, TensorCount before) =>
        new(after.Created - before.Created, after.Live - before.Live);
}
