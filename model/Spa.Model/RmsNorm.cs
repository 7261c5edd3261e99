using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>Root-mean-square normalisation with a learned gain; computed in fp32 whatever the model's dtype.</summary>
public sealed class RmsNorm(Tensor weight, double eps)
{
    // Held for the object's life: a Scalar converted implicitly per call is left to the finalizer, which TorchSharp 0.107
    // can run while the native call still reads it ("Unknown scalar type").
    private readonly Scalar _eps = eps.ToScalar();

    public Tensor Weight { get; } = weight;

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        bool reduced = x.dtype != ScalarType.Float32;
        var x32 = reduced ? x.to(ScalarType.Float32) : x;
        var normed = x32 * x32.square().mean([-1L], keepdim: true).add_(_eps).rsqrt_();
        return (reduced ? normed.to(x.dtype).mul_(Weight) : normed.mul_(Weight)).MoveToOuterDisposeScope();
    }
}
