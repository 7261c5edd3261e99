using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;

namespace Spa.Cli.Commands;

/// <summary>
/// The machine's memory bandwidth as STREAM's triad measures it (a[i] = b[i] + s * c[i] over arrays far larger than
/// any cache, counted as 3 x 4 bytes an element), best of several passes, on a given number of threads. Decoding one
/// token reads every weight once, so bandwidth over the weights' bytes bounds tokens/s.
/// </summary>
public static class MemoryBandwidth
{
    public static double TriadGigabytesPerSecond(int threads, long elements = 1L << 25, int passes = 6)
    {
        var a = new float[elements];
        var b = new float[elements];
        var c = new float[elements];
        Array.Fill(b, 1f);
        Array.Fill(c, 2f);
        long perThread = (elements / threads + Vector<float>.Count - 1) / Vector<float>.Count * Vector<float>.Count;
        double best = double.MaxValue;
        for (int pass = 0; pass < passes; pass++)
        {
            var clock = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                long start = t * perThread, end = Math.Min(elements, start + perThread);
                if (start < end) Triad(a.AsSpan((int)start, (int)(end - start)), b.AsSpan((int)start, (int)(end - start)), c.AsSpan((int)start, (int)(end - start)), 3f);
            });
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return 3.0 * sizeof(float) * elements / best / 1e9;
    }

    private static void Triad(Span<float> a, ReadOnlySpan<float> b, ReadOnlySpan<float> c, float scalar)
    {
        var va = MemoryMarshal.Cast<float, Vector<float>>(a);
        var vb = MemoryMarshal.Cast<float, Vector<float>>(b);
        var vc = MemoryMarshal.Cast<float, Vector<float>>(c);
        var s = new Vector<float>(scalar);
        for (int i = 0; i < va.Length; i++) va[i] = vb[i] + s * vc[i];
        for (int i = va.Length * Vector<float>.Count; i < a.Length; i++) a[i] = b[i] + scalar * c[i];
    }
}
