using TorchSharp;

namespace Spa.Model;

/// <summary>
/// Scalars that live as long as the process. TorchSharp 0.107 implements <c>a + b</c> and <c>a.add_(b)</c> as
/// <c>add(b, alpha: 1)</c> with the 1 converted to a Scalar that nothing keeps alive during the native call; when a
/// collection started by another thread finalises it mid-call, libtorch reads a freed Scalar ("Unknown scalar type").
/// Tensor sums on the model's paths therefore pass <see cref="One"/> explicitly.
/// </summary>
public static class Held
{
    public static readonly Scalar One = 1.ToScalar();
}
