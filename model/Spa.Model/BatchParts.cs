using System.Runtime.ExceptionServices;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// A batch's rows cut into consecutive parts that step side by side, one per core. On the CPU with torch on one thread
/// each call stays cheap, and a forward's fixed cost (its native calls, 89 of them creating a tensor for stories260K,
/// most of a small model's step) is paid once per part, in parallel, where otherwise one core pays it while the other
/// waits. The parts share nothing but a cache's disjoint slots, and a row gives what it gives alone, to within the
/// rounding of the matrix products (the tests require 1e-4 of the logits).
/// </summary>
public static class BatchParts
{
    /// <summary>
    /// The fewest rows worth a part of their own: on 2 cores a batch of 16 stepped 1.10-1.23x faster in two parts, and
    /// one of 8 no faster (0.85x and 1.04x in two parts of 4).
    /// </summary>
    public const int RowsPerPart = 8;

    /// <summary>How many parts a batch of <paramref name="rows"/> steps in on <paramref name="device"/>: 1 unless it is the CPU with one torch thread.</summary>
    public static int For(Device device, int rows) =>
        device.type == TorchSharp.DeviceType.CPU && get_num_threads() == 1 ? Math.Max(1, Math.Min(Environment.ProcessorCount, rows / RowsPerPart)) : 1;

    /// <summary>
    /// Runs <paramref name="step"/>(part, from, to) for each part's rows [from, to) of <paramref name="rows"/>, side by
    /// side, the calling thread among the thread pool's (it takes a part no other thread has started, so a busy pool
    /// delays nothing). Each part runs in inference mode, which libtorch keeps per thread, and its thread's tensors
    /// count in <see cref="TensorCount.OnCountedThreads"/>. A part's exception surfaces as itself.
    /// </summary>
    public static void Run(int rows, int parts, Action<int, int, int> step)
    {
        try
        {
            Parallel.For(0, parts, part =>
            {
                using var mode = inference_mode();
                TensorCount.CountThisThread();
                step(part, part * rows / parts, (part + 1) * rows / parts);
            });
        }
        catch (AggregateException failed) when (failed.InnerExceptions.Count == 1)
        {
            ExceptionDispatchInfo.Throw(failed.InnerExceptions[0]);
        }
    }
}
