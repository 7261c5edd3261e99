using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// Rotary position embedding. Both conventions rotate the same frequency pairs; they differ only in which dimensions
/// form a pair: adjacent ones (llama2.c) or the two halves of the head (Hugging Face). A pair (a, b) at angle θ becomes
/// (a cos θ - b sin θ, a sin θ + b cos θ), computed as x * cos + (x R) * sin where R maps each pair (a, b) to (-b, a).
/// Writing the swap as a fixed [headDim, headDim] matrix makes both conventions one matrix product, which costs far
/// less than the reshapes and slices it replaces when the tensors are small.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _cos;      // [maxSeq, 1, headDim], each frequency's cosine where its pair lives; the 1 broadcasts over heads
    private readonly Tensor _sin;
    private readonly Tensor _rotation; // [headDim, headDim]

    public RotaryEmbedding(LlamaConfig config, Device device, ScalarType dtype)
    {
        Style = config.Rope;
        int headDim = config.HeadDim, half = headDim / 2;
        using var scope = NewDisposeScope();
        var inverseFrequency = 1.0 / pow(config.RopeTheta, arange(0, half, dtype: ScalarType.Float64) * 2.0 / headDim);
        var angles = outer(arange(config.MaxSeqLen, dtype: ScalarType.Float64), inverseFrequency); // [maxSeq, half]
        var spread = Style == RopeStyle.Interleaved
            ? angles.repeat_interleave(2, dim: 1)   // f0 f0 f1 f1 ...
            : cat([angles, angles], dim: 1);        // f0 f1 ... f0 f1 ...
        _cos = spread.cos().unsqueeze(1).to(dtype, device).DetachFromDisposeScope();
        _sin = spread.sin().unsqueeze(1).to(dtype, device).DetachFromDisposeScope();

        var rotation = new float[headDim * headDim];
        for (int i = 0; i < half; i++)
        {
            var (a, b) = Style == RopeStyle.Interleaved ? (2 * i, 2 * i + 1) : (i, i + half);
            rotation[b * headDim + a] = -1; // output a takes -x_b
            rotation[a * headDim + b] = 1;  // output b takes  x_a
        }
        _rotation = tensor(rotation, [headDim, headDim]).to(dtype, device).DetachFromDisposeScope();
    }

    public RopeStyle Style { get; }

    /// <summary>positions: [B, T] int64. Returns cos and sin, each [B, T, 1, headDim], for <see cref="Apply"/>.</summary>
    public (Tensor Cos, Tensor Sin) At(Tensor positions) => (_cos[positions], _sin[positions]);

    /// <summary>x: [B, T, heads, headDim]; cos, sin from <see cref="At"/>. Returns the rotated x.</summary>
    public Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        return x.mul(cos).addcmul_(x.matmul(_rotation), sin, Held.One).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
        _rotation.Dispose();
    }
}
