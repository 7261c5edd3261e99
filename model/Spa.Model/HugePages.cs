using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// Asks Linux to back a tensor's memory with transparent huge pages (2 MiB) before it is first written. Weights read
/// from a file land in newly allocated memory, and on a virtual machine the first touch of each 4 KiB page is a costly
/// fault: it was most of a read load on the benchmark machine (BENCHMARKS.md, huge pages). One fault per 2 MiB removes
/// that. Kernels whose transparent huge pages are "madvise" (the usual default) honour the advice; "always" needs
/// none; "never" ignores it. Memory that was already touched is left as it is.
/// </summary>
public static class HugePages
{
    public const long Size = 2L << 20;

    private const int AdviseHugePage = 14; // MADV_HUGEPAGE

    /// <summary>
    /// Advises the whole 2 MiB pages inside <paramref name="tensor"/>'s storage (a contiguous CPU tensor). False when
    /// nothing was advised: not Linux, another device, smaller than a huge page, or the kernel refused.
    /// </summary>
    public static bool Advise(Tensor tensor)
    {
        if (!OperatingSystem.IsLinux() || tensor.device_type != TorchSharp.DeviceType.CPU || !tensor.is_contiguous() || tensor.NumberOfElements == 0) return false;
        var (start, end) = Range(tensor);
        long first = (start + Size - 1) & ~(Size - 1), last = end & ~(Size - 1);
        return last > first && madvise(new IntPtr(first), (nuint)(last - first), AdviseHugePage) == 0;
    }

    /// <summary>
    /// Bytes of huge pages in the memory mappings that hold <paramref name="tensors"/> (contiguous CPU tensors; others
    /// are left out), from the kernel's /proc/self/smaps: whether the advice took effect. 0 where nothing is known (not Linux).
    /// </summary>
    public static long BackedBytes(IEnumerable<Tensor> tensors)
    {
        const string Header = "AnonHugePages:";
        if (!OperatingSystem.IsLinux()) return 0;
        var ranges = tensors.Where(t => t.device_type == TorchSharp.DeviceType.CPU && t.is_contiguous() && t.NumberOfElements > 0).Select(Range).ToList();
        long total = 0;
        bool holds = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && long.TryParse(line.AsSpan(0, dash), System.Globalization.NumberStyles.HexNumber, null, out long from)
                && long.TryParse(line.AsSpan(dash + 1, space - dash - 1), System.Globalization.NumberStyles.HexNumber, null, out long to))
                holds = ranges.Any(r => r.Start < to && r.End > from);
            else if (holds && line.StartsWith(Header, StringComparison.Ordinal))
            {
                var kilobytes = line.AsSpan(Header.Length).Trim(); // "2048 kB"
                total += long.Parse(kilobytes[..kilobytes.IndexOf(' ')]) * 1024;
            }
        }
        return total;
    }

    /// <summary>The bytes a contiguous tensor's elements occupy (its span over them would overflow an int above 2 GB).</summary>
    private static unsafe (long Start, long End) Range(Tensor tensor)
    {
        using var flat = tensor.view(-1);
        using var first = flat.narrow(0, 0, 1);
        fixed (byte* p = first.bytes) return ((long)p, (long)p + tensor.NumberOfElements * tensor.ElementSize);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int madvise(IntPtr address, nuint length, int advice);
}
