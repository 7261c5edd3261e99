using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// Attention of new tokens over a KV cache, for float32 on the CPU with one torch thread, written as llama2.c writes
/// it: for each query head, a dot product with every visible key, a softmax, and the weighted sum of the values, in
/// vectors of 8 floats. It also stores the new keys and values into the cache.
/// Why not libtorch's scaled_dot_product_attention: its CPU flash kernel calls MKL's sgemm twice for every (row, head)
/// block, and with stories260K's heads of 8 dimensions each call costs far more than its arithmetic. A batch of 64
/// rows at 128 keys took 280-300 us a layer in it (two thirds of the layer), and two indexed stores of the new keys
/// and values 8 us each; this loop does the same work in 130-185 us, with no call per block.
/// Every row is computed alone, in the same order whatever the batch, so a sequence's result does not depend on the
/// sequences decoding beside it.
/// </summary>
internal static unsafe class CpuAttention
{
    private const int Lanes = 8; // floats in a Vector256
    private const int LineFloats = 16; // floats in a 64-byte cache line

    /// <summary>
    /// Whether this kernel serves a forward: float32 on the CPU, heads a multiple of 8 floats, AVX2 with FMA, one torch
    /// thread (libtorch spreads its own kernel over its threads), and no backward pass to record (the kernel has none).
    /// </summary>
    public static bool Serves(LlamaConfig config, Device device, ScalarType dtype) =>
        device.type == TorchSharp.DeviceType.CPU && dtype == ScalarType.Float32 && config.HeadDim % Lanes == 0
        && Avx2.IsSupported && Fma.IsSupported && get_num_threads() == 1 && !is_grad_enabled();

    /// <summary>
    /// The shapes of one forward: B rows of T new tokens each (right-padded) over one cache layer; row b appends
    /// Counts[b] tokens to the Past[b] its slot holds; KeyLength is the longest row's length after them. OneCore keeps
    /// every row on the calling thread.
    /// </summary>
    public readonly record struct Layout(int Heads, int KvHeads, int HeadDim, int Capacity, int[] Slots, int[] Past, int[] Counts, int NewLength, int KeyLength,
        bool OneCore = false);

    /// <summary>
    /// A layer's attention splits its rows over the cores from this many query-key pairs on (32 rows of 8 heads at 128
    /// keys). Splitting from 4,096 made batches of 4 to 16 no faster, and a smaller forward leaves the other cores to
    /// the silo's other work; a single sequence always runs on the calling thread.
    /// </summary>
    public const long PairsWorthSplitting = 32_768;

    /// <summary>
    /// rotated: [B, T, heads + kvHeads, headDim], the rotated queries then keys; projected: [B, T, heads + 2 kvHeads,
    /// headDim], whose last kvHeads are the values; keys, values: the cache layer, [slots, kvHeads, capacity, headDim].
    /// Stores every real new token's key and value at its position, then writes each query head's attention over the
    /// keys its token may see (its own sequence up to itself; a padding position sees its row's real tokens) to output:
    /// [B, T, heads * headDim]. Rows are independent, so a large batch spreads them over the cores (torch itself runs
    /// on one thread when this kernel serves); each row's arithmetic is the same on any thread.
    /// </summary>
    public static void Attend(in Layout layout, float* rotated, float* projected, float* keys, float* values, float* output)
    {
        Store(layout, rotated, projected, keys, values);
        int rows = layout.Slots.Length;
        if (rows == 1 || layout.OneCore || Environment.ProcessorCount == 1 || Pairs(layout) < PairsWorthSplitting)
        {
            AttendRows(layout, rotated, keys, values, output, 0, rows);
            return;
        }

        var shared = layout;
        nint rotatedAt = (nint)rotated, keysAt = (nint)keys, valuesAt = (nint)values, outputAt = (nint)output;
        Parallel.For(0, rows, b => AttendRows(shared, (float*)rotatedAt, (float*)keysAt, (float*)valuesAt, (float*)outputAt, b, b + 1));
    }

    /// <summary>Query-key pairs of a forward's attention in one layer.</summary>
    private static long Pairs(in Layout layout)
    {
        long pairs = 0;
        for (int b = 0; b < layout.Slots.Length; b++)
            for (int t = 0; t < layout.NewLength; t++)
                pairs += AttentionBatch.VisibleKeys(layout.Past[b], layout.Counts[b], t);
        return pairs * layout.Heads;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // as AttendRows, below
    private static void Store(in Layout layout, float* rotated, float* projected, float* keys, float* values)
    {
        int heads = layout.Heads, kvHeads = layout.KvHeads, headDim = layout.HeadDim;
        long rotatedToken = (long)(heads + kvHeads) * headDim, projectedToken = (long)(heads + 2 * kvHeads) * headDim;
        long slotStride = (long)kvHeads * layout.Capacity * headDim, headStride = (long)layout.Capacity * headDim;
        for (int b = 0; b < layout.Slots.Length; b++)
        {
            for (int t = 0; t < layout.Counts[b]; t++)
            {
                long token = (long)b * layout.NewLength + t;
                long position = (long)layout.Slots[b] * slotStride + (layout.Past[b] + t) * (long)headDim;
                for (int h = 0; h < kvHeads; h++)
                {
                    Copy(rotated + token * rotatedToken + (heads + h) * headDim, keys + position + h * headStride, headDim);
                    Copy(projected + token * projectedToken + (heads + kvHeads + h) * headDim, values + position + h * headStride, headDim);
                }
            }
        }
    }

    /// <summary>Rows [from, to) of <see cref="Attend"/>'s output.</summary>
    // Compiled optimized at the first call: in tier-0 code every vector operation is a call, and a new process spent
    // its first few hundred tokens there (200 tokens of a cold `spa generate`: 0.16 s, against 0.11 s so).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRows(in Layout layout, float* rotated, float* keys, float* values, float* output, int from, int to)
    {
        int heads = layout.Heads, kvHeads = layout.KvHeads, headDim = layout.HeadDim, newLength = layout.NewLength;
        int groups = heads / kvHeads;
        long rotatedToken = (long)(heads + kvHeads) * headDim;
        long slotStride = (long)kvHeads * layout.Capacity * headDim, headStride = (long)layout.Capacity * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        var scores = ArrayPool<float>.Shared.Rent(layout.KeyLength);
        try
        {
            fixed (float* weights = scores)
            {
                for (int b = from; b < to; b++)
                {
                    for (int t = 0; t < newLength; t++)
                    {
                        int visible = AttentionBatch.VisibleKeys(layout.Past[b], layout.Counts[b], t);
                        long token = (long)b * newLength + t;
                        for (int h = 0; h < heads; h++)
                        {
                            int kvHead = h / groups;
                            long kvBase = (long)layout.Slots[b] * slotStride + kvHead * headStride;
                            // The first query of a group fetches the block a decoding step reads next: the row's
                            // next key-value head, else the next row's first (on whichever thread computes it).
                            long nextBase = h % groups != 0 ? -1
                                : kvHead + 1 < kvHeads ? kvBase + headStride
                                : b + 1 < layout.Slots.Length ? (long)layout.Slots[b + 1] * slotStride : -1;
                            Head(rotated + token * rotatedToken + h * headDim, keys + kvBase, values + kvBase, visible, headDim, scale, weights,
                                output + token * heads * headDim + h * headDim,
                                nextBase < 0 ? null : keys + nextBase, nextBase < 0 ? null : values + nextBase);
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scores);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Copy(float* from, float* to, int count) =>
        new ReadOnlySpan<float>(from, count).CopyTo(new Span<float>(to, count));

    /// <summary>
    /// One query over its first <paramref name="visible"/> keys and values (rows of headDim floats). While it reads the
    /// keys it asks the memory for as much of the next block (nextKeys, nextValues; null when there is none), since a
    /// batch's cache outgrows the CPU's caches and each block is too short for the hardware's prefetcher to ramp up.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Head(float* query, float* keys, float* values, int visible, int headDim, float scale, float* weights, float* output,
        float* nextKeys, float* nextValues)
    {
        int chunks = headDim / Lanes;
        var max = Vector256.Create(float.NegativeInfinity);
        int l = 0;
        for (; l + Lanes <= visible; l += Lanes)
        {
            if (nextKeys != null)
            {
                long from = (long)l * headDim;
                Prefetch(nextKeys + from, Lanes * headDim);
                Prefetch(nextValues + from, Lanes * headDim);
            }
            var s = Vector256.Multiply(EightDots(query, keys + (long)l * headDim, headDim, chunks), scale);
            s.Store(weights + l);
            max = Vector256.Max(max, s);
        }
        float largest = MaxOf(max);
        for (; l < visible; l++)
        {
            weights[l] = Dot(query, keys + (long)l * headDim, chunks) * scale;
            largest = MathF.Max(largest, weights[l]);
        }

        var shift = Vector256.Create(largest);
        var sums = Vector256<float>.Zero;
        l = 0;
        for (; l + Lanes <= visible; l += Lanes)
        {
            var e = ExpOfNonPositive(Vector256.Load(weights + l) - shift);
            e.Store(weights + l);
            sums += e;
        }
        float sum = Vector256.Sum(sums);
        for (; l < visible; l++)
        {
            weights[l] = MathF.Exp(weights[l] - largest);
            sum += weights[l];
        }

        var normaliser = Vector256.Create(1f / sum);
        for (int c = 0; c < chunks; c++)
        {
            // Four sums over alternate keys, so that each fused multiply-add does not wait for the one before.
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            float* column = values + c * Lanes;
            int k = 0;
            for (; k + 4 <= visible; k += 4)
            {
                a0 = Fma.MultiplyAdd(Vector256.Create(weights[k]), Vector256.Load(column + (long)k * headDim), a0);
                a1 = Fma.MultiplyAdd(Vector256.Create(weights[k + 1]), Vector256.Load(column + (long)(k + 1) * headDim), a1);
                a2 = Fma.MultiplyAdd(Vector256.Create(weights[k + 2]), Vector256.Load(column + (long)(k + 2) * headDim), a2);
                a3 = Fma.MultiplyAdd(Vector256.Create(weights[k + 3]), Vector256.Load(column + (long)(k + 3) * headDim), a3);
            }
            for (; k < visible; k++) a0 = Fma.MultiplyAdd(Vector256.Create(weights[k]), Vector256.Load(column + (long)k * headDim), a0);
            ((a0 + a1 + (a2 + a3)) * normaliser).Store(output + c * Lanes);
        }
    }

    /// <summary>The query's dot products with 8 consecutive keys, in key order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> EightDots(float* query, float* keys, int headDim, int chunks)
    {
        var p0 = Products(query, keys, chunks);
        var p1 = Products(query, keys + headDim, chunks);
        var p2 = Products(query, keys + 2 * headDim, chunks);
        var p3 = Products(query, keys + 3 * headDim, chunks);
        var p4 = Products(query, keys + 4 * headDim, chunks);
        var p5 = Products(query, keys + 5 * headDim, chunks);
        var p6 = Products(query, keys + 6 * headDim, chunks);
        var p7 = Products(query, keys + 7 * headDim, chunks);
        // Pairwise sums: each 128-bit lane ends with the partial dot products of keys 0-3, then of keys 4-7;
        // adding the low lanes to the high ones gives the 8 dot products.
        var first = Avx.HorizontalAdd(Avx.HorizontalAdd(p0, p1), Avx.HorizontalAdd(p2, p3));
        var second = Avx.HorizontalAdd(Avx.HorizontalAdd(p4, p5), Avx.HorizontalAdd(p6, p7));
        return Avx.Add(Avx.Permute2x128(first, second, 0x20), Avx.Permute2x128(first, second, 0x31));
    }

    /// <summary>The query's elementwise products with one key, summed over the head's chunks of 8: 8 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Products(float* query, float* key, int chunks)
    {
        var sum = Vector256.Load(query) * Vector256.Load(key);
        for (int c = 1; c < chunks; c++) sum = Fma.MultiplyAdd(Vector256.Load(query + c * Lanes), Vector256.Load(key + c * Lanes), sum);
        return sum;
    }

    /// <summary>
    /// e^x for x <= 0, within 2 units in the last place: 2^n times a polynomial for e^r, where x = n ln 2 + r and
    /// |r| <= ln 2 / 2 (Cephes' expf). Vector256.Exp on floats computes in double precision: a widening, a call and a
    /// narrowing for every 8 values.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ExpOfNonPositive(Vector256<float> x)
    {
        x = Vector256.Max(x, Vector256.Create(-87.33654f)); // e^-87.34 is float's smallest normal number; below it, 0 is close enough
        var n = Avx.RoundToNearestInteger(x * 1.44269504f);
        var r = Fma.MultiplyAddNegated(n, Vector256.Create(0.693359375f), x);
        r = Fma.MultiplyAddNegated(n, Vector256.Create(-2.12194440e-4f), r); // ln 2 in two parts, so that r keeps its low bits
        var p = Fma.MultiplyAdd(Vector256.Create(1.9875691500e-4f), r, Vector256.Create(1.3981999507e-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        var expR = Fma.MultiplyAdd(p, r * r, r) + Vector256.Create(1f);
        var twoToN = (Vector256.ConvertToInt32(n) + Vector256.Create(127)) << 23;
        return expR * twoToN.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(float* from, int floats)
    {
        for (int offset = 0; offset < floats; offset += LineFloats) Sse.Prefetch0(from + offset);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* query, float* key, int chunks) => Vector256.Sum(Products(query, key, chunks));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxOf(Vector256<float> v)
    {
        var half = Vector128.Max(v.GetLower(), v.GetUpper());
        return MathF.Max(MathF.Max(half[0], half[1]), MathF.Max(half[2], half[3]));
    }
}
