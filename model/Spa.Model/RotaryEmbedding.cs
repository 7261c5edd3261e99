using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// Rotary position embedding. Both conventions rotate the same frequency pairs; they differ only in which dimensions
/// form a pair: adjacent ones (llama2.c) or the two halves of the head (Hugging Face). A pair (a, b) at angle θ becomes
/// (a cos θ - b sin θ, a sin θ + b cos θ): x * cos + (x R) * sin where R maps each pair (a, b) to (-b, a), that is x M
/// with M = diag(cos) + R diag(sin). Both conventions are one [headDim, headDim] matrix per position, taken once per
/// forward for the positions in it (from a table of every position when that is small) and applied in every layer as
/// one matrix product: at small sizes each call costs far more than its arithmetic, and the elementwise form takes
/// three calls per layer. The matrices of a whole forward stay small beside its KV cache (a 4,096-token LLaMA-7B
/// prompt: 128 MB in bf16, against 2 GB of cache).
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _cos;      // [maxSeq, 1, headDim], each frequency's cosine where its pair lives; the 1 broadcasts over heads
    private readonly Tensor _sin;
    private readonly Tensor _rotation; // [headDim, headDim]: R
    private readonly Tensor _identity; // [headDim, headDim]
    private readonly Tensor? _table;   // [maxSeq, headDim, headDim]: every position's rotation, when small (see TableBytes)

    /// <summary>
    /// Largest table of every position's rotation kept: stories260K's is 128 KB, and reading a batch's rotations from
    /// it is one call where building them is four (9 us against 3 for one token). LLaMA-7B's would be 134 MB in fp32,
    /// so large models build them per forward.
    /// </summary>
    public const long TableBytes = 4L << 20;

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
        _identity = eye(headDim, dtype: dtype, device: device).DetachFromDisposeScope();
        long tableBytes = (long)config.MaxSeqLen * headDim * headDim * _cos.ElementSize;
        if (tableBytes <= TableBytes)
            _table = Build(arange(config.MaxSeqLen, dtype: ScalarType.Int64, device: device)).DetachFromDisposeScope();
    }

    public RopeStyle Style { get; }

    /// <summary>Whether every position's rotation is kept as one table (see <see cref="TableBytes"/>).</summary>
    internal bool HoldsTable => _table is not null;

    /// <summary>
    /// positions: [B, T] int64. Returns the rotation at each position, [B, T, headDim, headDim], for <see cref="Apply"/>:
    /// read from the table of every position when there is one, the same values built for these positions otherwise.
    /// </summary>
    public Tensor At(Tensor positions) => _table is null ? Build(positions) : _table[positions];

    private Tensor Build(Tensor positions)
    {
        using var scope = NewDisposeScope();
        // [headDim, headDim] * [..., 1, headDim] broadcasts to [..., headDim, headDim]: entry (k, j) is I_kj cos_j + R_kj sin_j
        return _identity.mul(_cos[positions]).addcmul_(_rotation, _sin[positions], Held.One).MoveToOuterDisposeScope();
    }

    /// <summary>x: [B, T, heads, headDim]; rotations from <see cref="At"/>. Returns the rotated x.</summary>
    public Tensor Apply(Tensor x, Tensor rotations) => x.matmul(rotations);

    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
        _rotation.Dispose();
        _identity.Dispose();
        _table?.Dispose();
    }
}
