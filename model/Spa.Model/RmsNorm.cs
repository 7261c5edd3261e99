using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>Root-mean-square normalisation with a learned gain; computed in fp32 whatever the model's dtype.</summary>
public sealed class RmsNorm(Tensor weight, double eps)
{
    public Tensor Weight { get; } = weight;

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        bool reduced = x.dtype != ScalarType.Float32;
        var x32 = reduced ? x.to(ScalarType.Float32) : x;
        var normed = x32 * x32.square().mean([-1L], keepdim: true).add_(eps).rsqrt_();
        return (reduced ? normed.to(x.dtype).mul_(Weight) : normed.mul_(Weight)).MoveToOuterDisposeScope();
    }
}
