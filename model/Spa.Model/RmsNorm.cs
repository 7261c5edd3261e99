using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>Root-mean-square normalisation with a learned gain; computed in fp32 whatever the model's dtype.</summary>
public sealed class RmsNorm(Tensor weight, double eps)
{
    private readonly Tensor _width = Held.Float(weight.shape[^1], weight.device);
    private readonly Tensor _eps = Held.Float((float)eps, weight.device);

    public Tensor Weight { get; } = weight;

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        bool reduced = x.dtype != ScalarType.Float32;
        var x32 = reduced ? x.to(ScalarType.Float32) : x;
        var normed = x32 * InverseRms(x32, _width, _eps);
        return (reduced ? normed.to(x.dtype).mul_(Weight) : normed.mul_(Weight)).MoveToOuterDisposeScope();
    }

    /// <summary>x: [..., d], fp32. Returns 1 / sqrt(mean(x²) + eps) over the last dimension: [..., 1].</summary>
    public static Tensor InverseRms(Tensor x, double eps) => InverseRms(x, Held.Float(x.shape[^1], x.device), Held.Float((float)eps, x.device));

    // The mean as libtorch computes it on the CPU (a sum, then a division by the width), with the width and eps as held
    // float32 tensors: bit for bit the result of mean(x²) + eps, in cheaper calls. mean() hides a second operation, and
    // libtorch wraps a Scalar operand into a new tensor on every call; together they were about 40% of a norm's time on
    // small models, which run 2 norms per layer and token.
    private static Tensor InverseRms(Tensor x, Tensor width, Tensor eps) =>
        x.mul(x).sum([-1L], keepdim: true).div_(width).add_(eps, Held.One).rsqrt_();
}
