namespace Spa.Model.Latency;

/// <summary>
/// The sizes of every plugin kind, for projecting traffic and parameter counts of plugins that need not exist, LST
/// included. Side width, ladder adapter width and LST reduction default to DESIGN section 2; rank 8 and bottleneck 64
/// are the usual LoRA and Houlsby settings. A trained plugin's <see cref="Plugins.PluginDimensions"/> carry the sizes
/// it really has.
/// </summary>
/// <param name="SideDim">Ladder side width d_s.</param>
/// <param name="LadderAdapterDim">Width a of the ladder's per-layer adapters; null means the base's width d.</param>
/// <param name="LstReduction">LST reduction factor r: the side transformer is d/r wide.</param>
/// <param name="LoraRank">Rank of the LoRA updates on q and v.</param>
/// <param name="AdapterBottleneck">Bottleneck width m of the Houlsby adapters.</param>
public sealed record PluginSizes(
    int SideDim = 32,
    int? LadderAdapterDim = null,
    int LstReduction = 8,
    int LoraRank = 8,
    int AdapterBottleneck = 64)
{
    public static PluginSizes Default { get; } = new();

    public int SideDim { get; init; } = Checks.Positive(SideDim, nameof(SideDim));

    public int? LadderAdapterDim { get; init; } = LadderAdapterDim is null ? null : Checks.Positive(LadderAdapterDim.Value, nameof(LadderAdapterDim));

    public int LstReduction { get; init; } = Checks.Positive(LstReduction, nameof(LstReduction));

    public int LoraRank { get; init; } = Checks.Positive(LoraRank, nameof(LoraRank));

    public int AdapterBottleneck { get; init; } = Checks.Positive(AdapterBottleneck, nameof(AdapterBottleneck));

    public int AdapterDimFor(LlamaConfig config) => LadderAdapterDim ?? config.Dim;

    /// <summary>Width of the LST side transformer, d/r.</summary>
    public int LstDimFor(LlamaConfig config) =>
        config.Dim % LstReduction == 0
            ? config.Dim / LstReduction
            : throw new ArgumentException($"LST reduction {LstReduction} must divide the model width {config.Dim}");

    /// <summary>MLP width of the LST side transformer: the base's, reduced by the same factor (rounded down).</summary>
    public int LstHiddenDimFor(LlamaConfig config) => Math.Max(1, config.HiddenDim / LstReduction);
}
