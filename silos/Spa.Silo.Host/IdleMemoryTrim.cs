using System.Diagnostics;
using System.Runtime;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Spa.Grains;

namespace Spa.Silo;

/// <summary>When an idle host gives memory back to the operating system. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class MemoryTrimOptions
{
    public const string Section = "Spa:Memory";

    /// <summary>
    /// Seconds without model work after which the host trims its memory once (and once more when idle sessions and
    /// their stream state have been collected, see <see cref="IdleMemoryTrim"/>); 0 turns trimming off.
    /// </summary>
    public double TrimAfterIdleSeconds { get; set; } = 30;

    public TimeSpan TrimAfterIdle => TimeSpan.FromSeconds(TrimAfterIdleSeconds);

    public void Validate()
    {
        if (TrimAfterIdleSeconds is not (>= 0 and <= 86_400))
            throw new ArgumentException($"{Section}:TrimAfterIdleSeconds must be from 0 (off) to 86400, got {TrimAfterIdleSeconds}");
    }
}

/// <summary>
/// Gives the memory a load left behind back to the operating system once the host is idle. Neither allocator does it
/// by itself in an idle process: the GC keeps free regions committed (an ordinary full collection does not give them
/// back) and a process that allocates little does not collect; glibc's malloc keeps freed blocks in its per-thread
/// arenas, returning only the top of the main heap. So after a load the resident set stayed near its peak (docs/reliability.md,
/// Reliability, soak: 30 MiB of free arena blocks after a 90 s soak). The trim is a blocking, compacting collection that decommits what it frees
/// (<see cref="GCCollectionMode.Aggressive"/>), then glibc's <c>malloc_trim(0)</c> on Linux.
/// <para>
/// It runs when no model work (<see cref="TorchWorker"/>) has come in for <see cref="MemoryTrimOptions.TrimAfterIdle"/>,
/// and once more when the finished sessions' activations and stream state have been collected as well (after the
/// sessions' idle lifetime and a collection quantum more); then not again until work has come in and stopped. Under
/// load it never runs. Each trim is logged with what it gave back, and counted in <c>spa_memory_trims_total</c> and
/// <c>spa_memory_trim_released_total</c>.
/// </para>
/// </summary>
internal sealed class IdleMemoryTrim(
    IOptions<MemoryTrimOptions> options, IOptions<SpaSessionOptions> sessions, IOptions<GrainCollectionOptions> collection,
    HostMetrics metrics, ILogger<IdleMemoryTrim> logger) : BackgroundService
{
    private static readonly TimeSpan LongestPoll = TimeSpan.FromSeconds(5);
    private bool _nativeTrim = OperatingSystem.IsLinux();

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        var first = options.Value.TrimAfterIdle;
        if (first <= TimeSpan.Zero) return;
        // How long after the last work each trim of an idle period runs.
        TimeSpan[] marks = [first, first + sessions.Value.IdleLifetime + collection.Value.CollectionQuantum];
        var poll = TimeSpan.FromTicks(Math.Clamp(marks[0].Ticks / 4, TimeSpan.FromMilliseconds(100).Ticks, LongestPoll.Ticks));
        using var timer = new PeriodicTimer(poll);
        long seen = Work();
        var idleSince = Stopwatch.GetTimestamp();
        int done = 0; // marks of this idle period already trimmed at
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                long work = Work();
                if (work != seen || TorchWorker.Shared.IsBusy || TorchWorker.Edge.IsBusy)
                {
                    (seen, idleSince, done) = (work, Stopwatch.GetTimestamp(), 0);
                    continue;
                }
                var idle = Stopwatch.GetElapsedTime(idleSince);
                if (done < marks.Length && idle >= marks[done])
                {
                    Trim(idle);
                    while (done < marks.Length && idle >= marks[done]) done++;
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // the host is stopping
        }
    }

    private static long Work() => TorchWorker.Shared.Submitted + TorchWorker.Edge.Submitted;

    private void Trim(TimeSpan idle)
    {
        long residentBefore = Resident(), heapBefore = GC.GetGCMemoryInfo().HeapSizeBytes;
        var clock = Stopwatch.StartNew();
        GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long residentAfterGc = Resident();
        if (_nativeTrim)
        {
            try
            {
                MallocTrim(0);
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                _nativeTrim = false; // not glibc (musl has no malloc_trim): the GC's part still runs
                logger.LogInformation("malloc_trim is not available ({Reason}); idle trims release managed memory only", e.Message);
            }
        }
        long residentAfter = Resident(), released = residentBefore - residentAfter;
        metrics.MemoryTrimmed(released);
        logger.LogInformation(
            "Idle for {Idle:F0} s: memory trim released {Released} MiB in {Elapsed} ms ({ByGc} MiB by the GC, {ByMalloc} MiB by malloc_trim; " +
            "resident {Before} -> {After} MiB, managed heap {HeapBefore} -> {HeapAfter} MiB)",
            idle.TotalSeconds, released >> 20, clock.ElapsedMilliseconds, (residentBefore - residentAfterGc) >> 20, (residentAfterGc - residentAfter) >> 20,
            residentBefore >> 20, residentAfter >> 20, heapBefore >> 20, GC.GetGCMemoryInfo().HeapSizeBytes >> 20);
    }

    /// <summary>The resident set of this process (re-read, not the cached figure of a <see cref="Process"/> object).</summary>
    private static long Resident()
    {
        using var self = Process.GetCurrentProcess();
        return self.WorkingSet64;
    }

    /// <summary>glibc: returns the free memory at the top of the heap and the free pages inside every arena to the system.</summary>
    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);
}
