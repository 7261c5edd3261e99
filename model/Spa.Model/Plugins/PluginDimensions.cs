namespace Spa.Model.Plugins;

/// <summary>
/// Sizes of the per-user networks of every kind: those of a trained plugin (saved in its manifest), and those used to
/// project the traffic and parameter counts of plugins that need not exist, LST included. Every size must be positive.
/// </summary>
/// <remarks>
/// Two factories: <see cref="For"/>, the default for trained plugins, follows the SPA paper's public code for the
/// ladder (side width 32, adapter width d) and picks LoRA's rank and the adapters' bottleneck that give the ladder's
/// parameter count, so that every placement compares at the same per-user capacity; <see cref="Conventional"/> uses
/// the usual LoRA and Houlsby settings instead (rank 8, bottleneck 64), for projections.
/// </remarks>
/// <param name="SideDim">Ladder side width d_s.</param>
/// <param name="AdapterDim">Width a of the ladder's per-layer adapters.</param>
/// <param name="LoraRank">Rank r of the LoRA updates on q and v.</param>
/// <param name="LoraAlpha">LoRA's scale numerator: the updates are scaled by alpha / r.</param>
/// <param name="AdapterBottleneck">Bottleneck width m of the Houlsby adapters.</param>
/// <param name="LstReduction">LST reduction factor r: the side transformer is d/r wide. Manifests written before it
/// existed lack it and get the default.</param>
public sealed record PluginDimensions(
    int SideDim,
    int AdapterDim,
    int LoraRank,
    double LoraAlpha,
    int AdapterBottleneck,
    int LstReduction = PluginDimensions.DefaultLstReduction)
{
    public const int DefaultSideDim = 32;
    public const int DefaultLstReduction = 8;
    public const int ConventionalLoraRank = 8;
    public const int ConventionalAdapterBottleneck = 64;

    // Each size is checked when constructed (the initialiser) and when changed by a with-expression (the init accessor).

    public int SideDim { get; init => field = Positive(value, nameof(SideDim)); } = Positive(SideDim, nameof(SideDim));

    public int AdapterDim { get; init => field = Positive(value, nameof(AdapterDim)); } = Positive(AdapterDim, nameof(AdapterDim));

    public int LoraRank { get; init => field = Positive(value, nameof(LoraRank)); } = Positive(LoraRank, nameof(LoraRank));

    public double LoraAlpha { get; init => field = Positive(value, nameof(LoraAlpha)); } = Positive(LoraAlpha, nameof(LoraAlpha));

    public int AdapterBottleneck { get; init => field = Positive(value, nameof(AdapterBottleneck)); } = Positive(AdapterBottleneck, nameof(AdapterBottleneck));

    public int LstReduction { get; init => field = Positive(value, nameof(LstReduction)); } = Positive(LstReduction, nameof(LstReduction));

    /// <summary>Capacity-matched sizes, the default for trained plugins; a null size takes its default.</summary>
    public static PluginDimensions For(LlamaConfig config, int? sideDim = null, int? loraRank = null, int? adapterBottleneck = null, int? ladderAdapterDim = null)
    {
        int side = Positive(sideDim ?? Math.Min(DefaultSideDim, config.Dim / 2), "side dimension");
        int adapterDim = Positive(ladderAdapterDim ?? config.Dim, "adapter width");
        long ladder = LadderParameters(config, side, adapterDim);
        int kvDim = config.KvHeads * config.HeadDim;
        long loraPerRank = (long)config.Layers * (2L * config.Dim + config.Dim + kvDim);
        long adapterPerWidth = 2L * config.Layers * (2L * config.Dim + 1);
        int rank = loraRank ?? (int)Math.Max(1, Math.Round((double)ladder / loraPerRank));
        int bottleneck = adapterBottleneck ?? (int)Math.Max(1, Math.Round((double)(ladder - 2L * config.Layers * config.Dim) / adapterPerWidth));
        return new PluginDimensions(side, adapterDim, rank, 2.0 * rank, bottleneck, DefaultLstReduction);
    }

    /// <summary>
    /// The conventional sizes used to project plugins: side width 32 (at most d/2), adapter width d, LST reduction 8,
    /// LoRA rank 8 with alpha 16, adapter bottleneck 64.
    /// </summary>
    public static PluginDimensions Conventional(LlamaConfig config) => new(
        Math.Min(DefaultSideDim, config.Dim / 2), config.Dim, ConventionalLoraRank, 2.0 * ConventionalLoraRank, ConventionalAdapterBottleneck, DefaultLstReduction);

    public static long LadderParameters(LlamaConfig c, int side, int adapter) =>
        (c.Layers + 1L) * (c.Dim * side + side) + c.Layers * ((long)side * adapter + adapter + (long)adapter * side + side) + (long)side * c.Dim + c.Dim;

    /// <summary>Width of the LST side transformer, d/r.</summary>
    public int LstDimFor(LlamaConfig config) =>
        config.Dim % LstReduction == 0
            ? config.Dim / LstReduction
            : throw new ArgumentException($"LST reduction {LstReduction} must divide the model width {config.Dim}");

    /// <summary>MLP width of the LST side transformer: the base's, reduced by the same factor (rounded down).</summary>
    public int LstHiddenDimFor(LlamaConfig config) => Math.Max(1, config.HiddenDim / LstReduction);

    private static int Positive(int value, string name) =>
        value > 0 ? value : throw new ArgumentException($"plugin dimension {name} must be positive, not {value}", name);

    private static double Positive(double value, string name) =>
        value > 0 && double.IsFinite(value) ? value : throw new ArgumentException($"plugin dimension {name} must be positive and finite, not {value}", name);
}
