namespace Spa.Model.Plugins;

/// <summary>
/// Sizes of the per-user networks. The defaults follow the SPA paper's public code for the ladder (side width 32,
/// adapter width d); LoRA's rank and the adapters' bottleneck default to the values that give the ladder's parameter
/// count, so that every placement compares at the same per-user capacity.
/// </summary>
public sealed record PluginDimensions(int SideDim, int AdapterDim, int LoraRank, double LoraAlpha, int AdapterBottleneck)
{
    public const int DefaultSideDim = 32;

    public static PluginDimensions For(LlamaConfig config, int? sideDim = null, int? loraRank = null, int? adapterBottleneck = null)
    {
        int side = sideDim ?? Math.Min(DefaultSideDim, config.Dim / 2);
        int adapterDim = config.Dim;
        long ladder = LadderParameters(config, side, adapterDim);
        int kvDim = config.KvHeads * config.HeadDim;
        long loraPerRank = (long)config.Layers * (2L * config.Dim + config.Dim + kvDim);
        long adapterPerWidth = 2L * config.Layers * (2L * config.Dim + 1);
        int rank = loraRank ?? (int)Math.Max(1, Math.Round((double)ladder / loraPerRank));
        int bottleneck = adapterBottleneck ?? (int)Math.Max(1, Math.Round((double)(ladder - 2L * config.Layers * config.Dim) / adapterPerWidth));
        return new PluginDimensions(side, adapterDim, rank, 2.0 * rank, bottleneck);
    }

    public static long LadderParameters(LlamaConfig c, int side, int adapter) =>
        (c.Layers + 1L) * (c.Dim * side + side) + c.Layers * ((long)side * adapter + adapter + (long)adapter * side + side) + (long)side * c.Dim + c.Dim;
}
