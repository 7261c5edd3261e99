using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>Root-mean-square normalisation with a learned gain; computed in fp32 whatever the model's dtype.</summary>
public sealed class RmsNorm(Tensor weight, double eps)
{
    private readonly Tensor _width = Held.Float(weight.shape[^1], weight.device);
    private readonly Tensor _eps = Held.Float((float)eps, weight.device);

    public Tensor Weight { get; } = weight;

    /// <summary>
    /// x: [..., d]. The result belongs to the caller's dispose scope; the intermediates are disposed here rather than by a
    /// scope of its own, which would allocate a scope and its set on each of a token's 11 norms.
    /// </summary>
    public Tensor Forward(Tensor x)
    {
        if (x.dtype == ScalarType.Float32)
        {
            using var inverse = InverseRms(x, _width, _eps);
            return x.mul(inverse).mul_(Weight);
        }
        using var x32 = x.to(ScalarType.Float32);
        using var inverse32 = InverseRms(x32, _width, _eps);
        using var normed = x32.mul(inverse32);
        return normed.to(x.dtype).mul_(Weight);
    }

    /// <summary>x: [..., d], fp32. Returns 1 / sqrt(mean(x²) + eps) over the last dimension: [..., 1].</summary>
    public static Tensor InverseRms(Tensor x, double eps) => InverseRms(x, Held.Float(x.size(-1), x.device), Held.Float((float)eps, x.device));

    // The mean as libtorch computes it on the CPU (a sum, then a division by the width), with the width and eps as held
    // float32 tensors: bit for bit the result of mean(x²) + eps, in cheaper calls. mean() hides a second operation, and
    // libtorch wraps a Scalar operand into a new tensor on every call; together they were about 40% of a norm's time on
    // small models, which run 2 norms per layer and token.
    private static Tensor InverseRms(Tensor x, Tensor width, Tensor eps)
    {
        using var squares = x.mul(x);
        return squares.sum([-1L], keepdim: true).div_(width).add_(eps, Held.One).rsqrt_();
    }
}
