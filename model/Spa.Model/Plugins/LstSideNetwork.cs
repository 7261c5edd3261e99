using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// Ladder side-tuning (LST, Sung et al. 2022): a narrow LLaMA-style transformer of width d' = d/r with one side block
/// per base layer, fed by gated ladders from the base's residual stream:
/// <code>
///   s_0 = W_0 h_0                                                   (d -> d')
///   s   = sigmoid(alpha_l / T) s + (1 - sigmoid(alpha_l / T)) D_l h_l   l = 1..L  (D_l: d -> d', alpha_l init 0, T = 0.1)
///   s   = SideBlock_l(s)                                             pre-norm LLaMA block of width d', causal, RoPE
///   out = U RMSNorm(s)                                              (d' -> d, U init 0)
/// </code>
/// The side blocks are the base's own building blocks (<see cref="DecoderBlock"/>, <see cref="Attention"/>,
/// <see cref="Mlp"/>, <see cref="RmsNorm"/>) over trainable weights. Unlike the ladder, LST attends over past positions,
/// so it keeps its own <see cref="KvCache"/> on the device and must see every position's taps, in order.
/// The ladders (W_0, D_l) are <see cref="Project"/>: with taps placed in the cloud the cloud runs them and sends d'
/// values per tap instead of d.
/// </summary>
public sealed class LstSideNetwork : nn.Module
{
    /// <summary>The temperature T of the ladder gates sigmoid(alpha_l / T).</summary>
    public const double GateTemperature = 0.1;

    private readonly Linear input;
    private readonly ModuleList<Linear> downs;
    private readonly Parameter alphas;
    private readonly ModuleList<LstBlock> blocks;
    private readonly Parameter norm;
    private readonly Linear up;

    // Held, not converted per call: see RmsNorm. sigmoid(-x) = 1 - sigmoid(x) gives the ladder's share without a "1 - g".
    private readonly Scalar _inverseTemperature = (1.0 / GateTemperature).ToScalar();
    private readonly Scalar _negativeInverseTemperature = (-1.0 / GateTemperature).ToScalar();

    // The side blocks as the base's building blocks, built over the current parameter tensors and rebuilt when those
    // change (Module.to replaces them when it changes their dtype or device), with the rotary tables they share.
    private Built? _built;

    public LstSideNetwork(LlamaConfig baseConfig, int width, int hiddenDim) : base(nameof(LstSideNetwork))
    {
        Config = SideConfig(baseConfig, width, hiddenDim);
        Dim = baseConfig.Dim;
        Layers = baseConfig.Layers;
        input = nn.Linear(Dim, width, hasBias: false);
        downs = PerLayer.Modules(Layers, () => nn.Linear(Dim, width, hasBias: false));
        alphas = new Parameter(zeros(Layers));
        blocks = PerLayer.Modules(Layers, () => new LstBlock(Config));
        norm = new Parameter(ones(width));
        up = nn.Linear(width, Dim, hasBias: false);
        RegisterComponents();
        // U = 0 makes a fresh plugin add nothing: parallel and spa start exactly at the base.
        using (no_grad()) up.weight!.zero_();
    }

    /// <summary>The side transformer's dimensions: width d', MLP width, L layers, heads' query and key/value heads.</summary>
    public LlamaConfig Config { get; }

    /// <summary>The base's width d and layer count L.</summary>
    public int Dim { get; }
    public int Layers { get; }

    public long ParameterCount => parameters().Sum(p => p.NumberOfElements);

    /// <summary>
    /// The side transformer's configuration: width d', heads' = max(1, heads / r) (fewer if d' does not split into
    /// that many heads of even width), as many key/value heads, the base's vocabulary, context and norm epsilon, and
    /// rotate-half RoPE.
    /// </summary>
    public static LlamaConfig SideConfig(LlamaConfig baseConfig, int width, int hiddenDim)
    {
        if (width <= 0 || width > baseConfig.Dim) throw new ArgumentException($"LST width must be in 1..{baseConfig.Dim}, got {width}");
        if (hiddenDim <= 0) throw new ArgumentException($"LST MLP width must be positive, got {hiddenDim}");
        int heads = Math.Max(1, (int)((long)baseConfig.Heads * width / baseConfig.Dim));
        while (heads > 1 && (width % heads != 0 || (width / heads) % 2 != 0)) heads--;
        if (width % heads != 0 || (width / heads) % 2 != 0)
            throw new ArgumentException($"LST width {width} cannot be split into attention heads of even width");
        var config = new LlamaConfig(width, hiddenDim, baseConfig.Layers, heads, heads, baseConfig.VocabSize, baseConfig.MaxSeqLen,
            TiedEmbedding: false, RopeStyle.RotateHalf, baseConfig.RopeTheta, baseConfig.NormEps, baseConfig.BosId, baseConfig.EosId);
        config.Validate();
        return config;
    }

    /// <summary>A cache for the side blocks' keys and values: one slot per sequence, as the base's cache.</summary>
    public KvCache CreateCache(int slots, int capacity, Device device, ScalarType dtype) => new(Config, slots, capacity, device, dtype);

    /// <summary>taps: [L+1, ..., d] (h_0..h_L). Returns the ladders' projections [L+1, ..., d']: W_0 h_0, D_1 h_1, ..., D_L h_L.</summary>
    public Tensor Project(Tensor taps) => PerLayer.Project(input, downs, taps);

    /// <summary>
    /// Whole sequences from position 0 with no cache (training, teacher forcing). taps: [L+1, B, T, d], right-padded;
    /// lengths: real positions per row. Returns out: [B, T, d].
    /// </summary>
    public Tensor ForwardSequence(Tensor taps, IReadOnlyList<int> lengths)
    {
        using var scope = NewDisposeScope();
        var built = Build();
        using var batch = AttentionBatch.Causal(Config, built.Rope, lengths, (int)taps.shape[2], taps.device);
        return Output(built, Side(built, Project(taps), batch)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Appends counts[i] positions to the sequence in slot slots[i] of <paramref name="cache"/> and returns out at each
    /// sequence's last new position: [S, d]. projected: [L+1, N, d'] from <see cref="Project"/>, packed: the counts[0]
    /// positions of the first sequence, then those of the second, and so on (N = the sum of the counts).
    /// </summary>
    public Tensor Step(Tensor projected, KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<int> counts)
    {
        if (counts.Count != slots.Count || counts.Sum() != projected.shape[1])
            throw new ArgumentException($"the counts ({string.Join(", ", counts)}) do not add up to the {projected.shape[1]} positions given");
        using var scope = NewDisposeScope();
        var built = Build();
        int sequences = slots.Count, longest = counts.Max(), width = Config.Dim;
        var place = new long[projected.shape[1]];
        var last = new long[sequences];
        for (int b = 0, n = 0; b < sequences; b++)
        {
            for (int t = 0; t < counts[b]; t++) place[n++] = (long)b * longest + t;
            last[b] = (long)b * longest + counts[b] - 1;
        }
        var padded = zeros([Layers + 1, (long)sequences * longest, width], projected.dtype, projected.device)
            .index_copy_(1, tensor(place, device: projected.device), projected)
            .view(Layers + 1, sequences, longest, width);
        using var batch = AttentionBatch.ForCache(Config, built.Rope, cache, slots, counts, projected.device);
        var s = Side(built, padded, batch);
        batch.Commit();
        var atLast = s.reshape(-1, width).index_select(0, tensor(last, device: projected.device));
        return Output(built, atLast).MoveToOuterDisposeScope();
    }

    // projected: [L+1, B, T, d']. Returns s after the last side block: [B, T, d'].
    private Tensor Side(Built built, Tensor projected, AttentionBatch batch)
    {
        var s = projected[0];
        for (int l = 1; l <= Layers; l++)
        {
            var alpha = alphas[l - 1];
            var keep = alpha.mul(_inverseTemperature).sigmoid();          // sigmoid(alpha / T)
            var take = alpha.mul(_negativeInverseTemperature).sigmoid(); // 1 - sigmoid(alpha / T)
            s = built.Blocks[l - 1].Forward((s * keep).add(projected[l] * take, Held.One), batch);
        }
        return s;
    }

    private Tensor Output(Built built, Tensor s) => up.forward(built.Norm.Forward(s));

    private Built Build()
    {
        var weights = blocks.SelectMany(b => b.Weights).Append(norm).ToArray();
        if (_built is { } current && current.Weights.Length == weights.Length && current.Weights.Zip(weights).All(w => ReferenceEquals(w.First, w.Second)))
            return current;
        _built?.Rope.Dispose();
        var rope = new RotaryEmbedding(Config, norm.device, norm.dtype);
        _built = new Built(weights, rope, blocks.Select((b, l) => b.Block(Config, l, rope)).ToArray(), new RmsNorm(norm, Config.NormEps));
        return _built;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _built?.Rope.Dispose();
            _built = null;
            _inverseTemperature.Dispose();
            _negativeInverseTemperature.Dispose();
        }
        base.Dispose(disposing);
    }

    private sealed record Built(Tensor[] Weights, RotaryEmbedding Rope, DecoderBlock[] Blocks, RmsNorm Norm);
}

/// <summary>The trainable weights of one LST side block: a pre-norm LLaMA block of width d' (stacked q/k/v, SwiGLU).</summary>
internal sealed class LstBlock : nn.Module
{
    private readonly Parameter attentionNorm;
    private readonly Linear qkv;
    private readonly Linear output;
    private readonly Parameter mlpNorm;
    private readonly Linear gateUp;
    private readonly Linear down;

    public LstBlock(LlamaConfig config) : base(nameof(LstBlock))
    {
        int width = config.Dim, headDim = config.HeadDim;
        attentionNorm = new Parameter(ones(width));
        qkv = nn.Linear(width, (config.Heads + 2 * config.KvHeads) * headDim, hasBias: false);
        output = nn.Linear(config.Heads * headDim, width, hasBias: false);
        mlpNorm = new Parameter(ones(width));
        gateUp = nn.Linear(width, 2 * config.HiddenDim, hasBias: false);
        down = nn.Linear(config.HiddenDim, width, hasBias: false);
        RegisterComponents();
    }

    public IEnumerable<Tensor> Weights => [attentionNorm, qkv.weight!, output.weight!, mlpNorm, gateUp.weight!, down.weight!];

    public DecoderBlock Block(LlamaConfig config, int layer, RotaryEmbedding rope) => new(layer,
        new RmsNorm(attentionNorm, config.NormEps),
        new Attention(config, layer, new StackedProjection(qkv.weight!), output.weight!, rope),
        new RmsNorm(mlpNorm, config.NormEps),
        new Mlp(new StackedProjection(gateUp.weight!), down.weight!));
}

/// <summary>
/// LST decoding state for the sequences of one base <see cref="KvCache"/>. On the device: the LST's own cache, one slot
/// per base slot. In the cloud: per slot, the taps of positions the device has not seen yet (the gate kept those tokens
/// in the cloud); they ride along with the slot's next round trip, so the device sees every position once, in order.
/// </summary>
public sealed class LstDecodingState : IDisposable
{
    private readonly List<Tensor>[] _pending;

    public LstDecodingState(LstSideNetwork lst, KvCache baseCache, Device device, ScalarType dtype)
    {
        Cache = lst.CreateCache(baseCache.Slots, baseCache.Capacity, device, dtype);
        _pending = Enumerable.Range(0, baseCache.Slots).Select(_ => new List<Tensor>()).ToArray();
    }

    /// <summary>The device's cache of the side blocks' keys and values.</summary>
    public KvCache Cache { get; }

    /// <summary>Positions of the slot's sequence whose taps wait in the cloud.</summary>
    public int Pending(int slot) => _pending[slot].Sum(t => (int)t.shape[1]);

    /// <summary>
    /// Call before the base appends to <paramref name="slots"/>. A slot the base restarted (length 0) starts afresh; a
    /// slot whose base length is not what the LST has seen or holds (the base cache copied it, as beam search does) is
    /// an error: the LST's cache cannot follow it.
    /// </summary>
    public void Follow(KvCache baseCache, IReadOnlyList<int> slots)
    {
        foreach (int slot in slots)
        {
            int length = baseCache.Length(slot);
            if (length == 0)
            {
                Cache.Clear(slot);
                Drop(slot);
            }
            else if (length != Cache.Length(slot) + Pending(slot))
            {
                throw new InvalidOperationException(
                    $"the base's cache slot {slot} holds {length} positions but the LST has seen or holds {Cache.Length(slot) + Pending(slot)}: " +
                    "LST keeps its own KV cache and cannot follow a copied slot (beam search); decode greedily or by sampling");
            }
        }
    }

    /// <summary>taps: [L+1, n, d], the slot's next n positions; kept (as a copy) until the slot's next round trip.</summary>
    public void Buffer(int slot, Tensor taps) => _pending[slot].Add(taps.clone().DetachFromDisposeScope());

    /// <summary>
    /// Everything buffered for <paramref name="slots"/>, packed in slot order: [L+1, N, d] and the positions of each
    /// slot. The buffers are emptied.
    /// </summary>
    public (Tensor Taps, int[] Counts) Take(IReadOnlyList<int> slots)
    {
        var counts = slots.Select(Pending).ToArray();
        if (counts.Any(c => c == 0)) throw new InvalidOperationException("a round trip needs at least one position of each sequence");
        var packed = cat(slots.SelectMany(s => _pending[s]).ToArray(), 1);
        foreach (int slot in slots) Drop(slot);
        return (packed, counts);
    }

    private void Drop(int slot)
    {
        foreach (var t in _pending[slot]) t.Dispose();
        _pending[slot].Clear();
    }

    public void Dispose()
    {
        for (int slot = 0; slot < _pending.Length; slot++) Drop(slot);
        Cache.Dispose();
    }
}
