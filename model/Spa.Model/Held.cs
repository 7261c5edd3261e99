using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// Scalars and constant tensors that live as long as the process. TorchSharp 0.107 implements <c>a + b</c> and
/// <c>a.add_(b)</c> as <c>add(b, alpha: 1)</c> with the 1 converted to a Scalar that nothing keeps alive during the
/// native call; when a collection started by another thread finalises it mid-call, libtorch reads a freed Scalar
/// ("Unknown scalar type"). Tensor sums on the model's paths therefore pass <see cref="One"/> explicitly.
/// </summary>
public static class Held
{
    private static readonly ConcurrentDictionary<(float Value, string Device), Tensor> Constants = new();

    public static readonly Scalar One = 1.ToScalar();

    /// <summary>
    /// A 0-dim float32 tensor holding <paramref name="value"/> on <paramref name="device"/>, shared by every caller.
    /// As the other operand of elementwise arithmetic it gives the same results as the Scalar, which libtorch wraps into
    /// a new tensor on every call: on a small model's shapes that wrapping is most of the call's cost. Callers never
    /// write it.
    /// </summary>
    public static Tensor Float(float value, Device device) =>
        Constants.GetOrAdd((value, device.ToString()), key =>
        {
            using var normal = inference_mode(false); // an inference tensor could not be saved for a backward pass
            return tensor(key.Value, device: device).DetachFromDisposeScope();
        });
}
