using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// A tensor's values in a managed array. The host-side tensor made on the way is disposed at once: left to the
/// finalizer, one per decoded token piles up native tensors between collections.
/// </summary>
public static class HostCopy
{
    public static float[] Floats(Tensor values)
    {
        using var onHost = values.cpu();
        return onHost.data<float>().ToArray();
    }
}
