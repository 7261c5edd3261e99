namespace Spa.Testing;

public static class FloatArrays
{
    /// <summary>The largest absolute difference between elements at the same index.</summary>
    public static float MaxAbsDifference(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
}
