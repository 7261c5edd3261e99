using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// A tensor's values as float32 in managed arrays, copied as blocks of memory. TorchSharp's element accessor
/// (<c>data&lt;float&gt;().ToArray()</c>) copies element by element through an index: 6 us for stories260K's 512 logits
/// against 0.5 us as a block, and it grows with the size (a LLaMA vocabulary is 32,000 logits a token). The tensors made
/// on the way (converted, on the host, contiguous) are disposed at once: left to the finalizer, one per decoded token
/// piles up native tensors between collections.
/// </summary>
public static class HostCopy
{
    public static float[] Floats(Tensor values)
    {
        using var scope = NewDisposeScope();
        return Dense(values).ToArray();
    }

    /// <summary>
    /// values: [rows, ...]. Each row's values, one array per row, copied straight from the tensor. A batch is not copied
    /// whole first: an array of 85,000 bytes or more is a large object, and allocating one per step makes the runtime
    /// collect the large-object heap now and then, at about 370 us a step on average for 64 x 512 logits (128 KB),
    /// against 6 us for arrays of a row each.
    /// </summary>
    public static float[][] Rows(Tensor values)
    {
        using var scope = NewDisposeScope();
        var all = Dense(values);
        int rows = (int)values.size(0);
        int width = rows == 0 ? 0 : all.Length / rows;
        var copies = new float[rows][];
        for (int r = 0; r < rows; r++) copies[r] = all.Slice(r * width, width).ToArray();
        return copies;
    }

    /// <summary>The values as float32 on the host, in order; the tensors behind the span belong to the caller's dispose scope.</summary>
    private static ReadOnlySpan<float> Dense(Tensor values) =>
        MemoryMarshal.Cast<byte, float>(values.to(ScalarType.Float32).cpu().contiguous().bytes);
}
