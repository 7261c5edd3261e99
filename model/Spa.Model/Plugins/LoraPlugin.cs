using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// Rank-r LoRA on the query and value projections of every layer: q += s B_q A_q x, v += s B_v A_v x with x the
/// layer's normalised attention input and s = alpha / r. Split across cloud and edge, the edge holds A and B, so each
/// layer is one round trip (x up, both deltas down): M = L.
/// </summary>
public sealed class LoraPlugin : nn.Module, ILayerHook
{
    private readonly ModuleList<Linear> queryDown;
    private readonly ModuleList<Linear> queryUp;
    private readonly ModuleList<Linear> valueDown;
    private readonly ModuleList<Linear> valueUp;
    private readonly int _queryDim;
    private readonly Scalar _scale; // held, not converted per call: see RmsNorm

    public LoraPlugin(LlamaConfig config, int rank, double alpha) : base(nameof(LoraPlugin))
    {
        if (rank <= 0) throw new ArgumentException($"LoRA rank must be positive, got {rank}");
        Rank = rank;
        _queryDim = config.Dim;
        Alpha = alpha;
        _scale = (alpha / rank).ToScalar();
        int kvDim = config.KvHeads * config.HeadDim;
        queryDown = PerLayer.Modules(config.Layers, () => nn.Linear(config.Dim, rank, hasBias: false));
        queryUp = PerLayer.Modules(config.Layers, () => nn.Linear(rank, config.Dim, hasBias: false));
        valueDown = PerLayer.Modules(config.Layers, () => nn.Linear(config.Dim, rank, hasBias: false));
        valueUp = PerLayer.Modules(config.Layers, () => nn.Linear(rank, kvDim, hasBias: false));
        RegisterComponents();
        // B = 0 makes a fresh plugin leave the base unchanged, as LoRA prescribes.
        using (no_grad())
            foreach (var up in queryUp.Concat(valueUp)) up.weight!.zero_();
    }

    public int Rank { get; }
    public double Alpha { get; }

    /// <summary>Set while the plugin runs split: every layer's call then crosses it.</summary>
    public EdgeTransport? Transport { get; set; }

    public (Tensor Query, Tensor Value)? AttentionDelta(int layer, Tensor normalisedInput)
    {
        using var scope = NewDisposeScope();
        Transport?.RoundTrip((int)normalisedInput.shape[0]); // one call per request, whatever its number of new tokens
        var x = Transport?.ToEdge(normalisedInput) ?? normalisedInput;
        var deltas = Deltas(layer, x);
        if (Transport is not null) deltas = Transport.ToCloud(deltas);
        var (query, value) = Split(deltas);
        return (query.MoveToOuterDisposeScope(), value.MoveToOuterDisposeScope());
    }

    /// <summary>What the device computes for one layer: x [..., dim] to [s B_q A_q x, s B_v A_v x] as [..., dim + kvDim].</summary>
    public Tensor Deltas(int layer, Tensor x)
    {
        using var scope = NewDisposeScope();
        var query = queryUp[layer].forward(queryDown[layer].forward(x)).mul_(_scale);
        var value = valueUp[layer].forward(valueDown[layer].forward(x)).mul_(_scale);
        return cat([query, value], -1).MoveToOuterDisposeScope();
    }

    /// <summary>The query and value parts of what <see cref="Deltas"/> returns (views).</summary>
    public (Tensor Query, Tensor Value) Split(Tensor deltas) =>
        (deltas.narrow(-1, 0, _queryDim), deltas.narrow(-1, _queryDim, deltas.shape[^1] - _queryDim));

    public Tensor AfterAttention(int layer, Tensor output) => output;

    public Tensor AfterMlp(int layer, Tensor output) => output;
}
