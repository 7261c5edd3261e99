using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>The raw little-endian elements of the floating types a checkpoint may store: F32, F16 and BF16.</summary>
internal static class StoredBytes
{
    public static int ElementSize(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float32 => 4,
        torch.ScalarType.Float16 or torch.ScalarType.BFloat16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "checkpoints store float32, float16 or bfloat16"),
    };

    /// <summary>
    /// A NaN or infinite weight silently poisons every logit downstream, so loading stops at the source. An element is
    /// not finite exactly when its exponent bits are all ones, which is checked on the bits, vectorised.
    /// </summary>
    public static bool AllFinite(ReadOnlySpan<byte> bytes, torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float32 => NoneMatch<uint>(bytes, 0x7F80_0000),
        torch.ScalarType.BFloat16 => NoneMatch<ushort>(bytes, 0x7F80),
        torch.ScalarType.Float16 => NoneMatch<ushort>(bytes, 0x7C00),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "checkpoints store float32, float16 or bfloat16"),
    };

    /// <summary>
    /// The elements as float32 bytes: themselves when stored as float32, else widened (exactly) into
    /// <paramref name="widened"/>, which must hold twice their bytes.
    /// </summary>
    public static ReadOnlySpan<byte> AsFloat32(ReadOnlySpan<byte> bytes, torch.ScalarType type, Span<byte> widened)
    {
        if (type == torch.ScalarType.Float32) return bytes;
        var halves = MemoryMarshal.Cast<byte, ushort>(bytes);
        var floats = MemoryMarshal.Cast<byte, float>(widened[..(bytes.Length * 2)]);
        for (int i = 0; i < halves.Length; i++)
            floats[i] = type == torch.ScalarType.BFloat16
                ? BitConverter.UInt32BitsToSingle((uint)halves[i] << 16)
                : (float)BitConverter.UInt16BitsToHalf(halves[i]);
        return widened[..(bytes.Length * 2)];
    }

    /// <summary>
    /// float32 elements rounded to bfloat16 (to nearest, ties to even, as torch rounds), written to
    /// <paramref name="bfloat16"/>, which holds half their bytes. Finite inputs only: loading refuses the others first.
    /// libtorch's own conversion, one chunk at a time, was the largest part of a bfloat16 load.
    /// </summary>
    public static void RoundToBFloat16(ReadOnlySpan<byte> float32, Span<byte> bfloat16)
    {
        var source = MemoryMarshal.Cast<byte, uint>(float32);
        var target = MemoryMarshal.Cast<byte, ushort>(bfloat16);
        var sourceVectors = MemoryMarshal.Cast<uint, Vector<uint>>(source);
        var targetVectors = MemoryMarshal.Cast<ushort, Vector<ushort>>(target);
        int whole = Math.Min(sourceVectors.Length / 2, targetVectors.Length);
        for (int v = 0; v < whole; v++)
            targetVectors[v] = Vector.Narrow(RoundedHigh(sourceVectors[2 * v]), RoundedHigh(sourceVectors[2 * v + 1]));
        for (int i = whole * Vector<ushort>.Count; i < source.Length; i++)
            target[i] = (ushort)((source[i] + 0x7FFF + ((source[i] >> 16) & 1)) >> 16);
    }

    private static Vector<uint> RoundedHigh(Vector<uint> bits) =>
        (bits + new Vector<uint>(0x7FFF) + ((bits >> 16) & Vector<uint>.One)) >> 16;

    private static bool NoneMatch<T>(ReadOnlySpan<byte> bytes, T exponent) where T : unmanaged, IBinaryInteger<T>
    {
        var elements = MemoryMarshal.Cast<byte, T>(bytes);
        var vectors = MemoryMarshal.Cast<T, Vector<T>>(elements);
        var mask = new Vector<T>(exponent);
        foreach (var v in vectors)
            if (Vector.EqualsAny(v & mask, mask)) return false;
        foreach (var e in elements[(vectors.Length * Vector<T>.Count)..])
            if ((e & exponent) == exponent) return false;
        return true;
    }
}
