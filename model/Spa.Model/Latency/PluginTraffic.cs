using Spa.Model.Plugins;

namespace Spa.Model.Latency;

/// <summary>
/// What one round trip between the cloud and the edge sends and computes for a plugin (docs/method.md), derived from
/// the dimensions alone. Bytes and FLOPs are per round trip; <see cref="RoundTripsPerToken"/> is M.
/// </summary>
/// <param name="BytesUp">Cloud to device: the taps (ladder, LST) or the layer input (LoRA, adapter).</param>
/// <param name="BytesDown">Device to cloud: <c>out</c> (ladder, LST), delta q and delta v (LoRA), the adapter's output.</param>
/// <param name="EdgeFlops">FLOPs the device spends; multiply-adds count two, biases and element-wise work are ignored.</param>
public sealed record PluginTraffic(PluginKind Kind, double RoundTripsPerToken, double BytesUp, double BytesDown, double EdgeFlops)
{
    /// <summary>Bytes of one activation vector of <paramref name="values"/> values; int8 carries one fp32 scale per vector.</summary>
    public static long VectorBytes(long values, ActivationType activation) => activation switch
    {
        ActivationType.Fp32 => 4 * values,
        ActivationType.Fp16 => 2 * values,
        ActivationType.Int8 => values + 4,
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, null),
    };

    /// <summary>The round trips a token needs when the edge is called for every token: ladder and LST 1, LoRA L, adapter 2L.</summary>
    public static int FixedRoundTripsPerToken(LlamaConfig config, PluginKind kind) => kind switch
    {
        PluginKind.Ladder or PluginKind.Lst => 1,
        PluginKind.Lora => config.Layers,
        PluginKind.Adapter => 2 * config.Layers,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>
    /// The traffic of one round trip. <paramref name="placement"/> matters to ladder and LST only (the other kinds
    /// send a layer's activation, not taps).
    /// </summary>
    /// <param name="contextTokens">Positions the LST's own attention covers (the mean context while generating);
    /// no other kind depends on it.</param>
    /// <param name="roundTripsPerToken">The measured M when a gate decides (switch, spa); null for the fixed rate.
    /// It changes the traffic of LST only: LST keeps a KV cache, so every token must reach it, and the taps of the
    /// tokens the gate kept in the cloud ride along with the next round trip, which then also runs them through the
    /// side blocks.</param>
    public static PluginTraffic For(
        LlamaConfig config,
        PluginKind kind,
        PluginDimensions dimensions,
        TapPlacement placement,
        ActivationType activation,
        int contextTokens = 0,
        double? roundTripsPerToken = null)
    {
        Checks.NonNegative(contextTokens, nameof(contextTokens));
        int fixedRate = FixedRoundTripsPerToken(config, kind);
        double m = roundTripsPerToken ?? fixedRate;
        if (m < 0 || m > fixedRate || !double.IsFinite(m))
            throw new ArgumentOutOfRangeException(nameof(roundTripsPerToken), m, $"{PluginNames.Name(kind)} makes between 0 and {fixedRate} round trips per token");

        long d = config.Dim, layers = config.Layers, kvDim = config.KvHeads * config.HeadDim;
        bool edgeTaps = placement == TapPlacement.Edge;
        switch (kind)
        {
            case PluginKind.Ladder:
            {
                long sideDim = dimensions.SideDim, adapterDim = dimensions.AdapterDim;
                double multiplyAdds = (edgeTaps ? (layers + 1) * d * sideDim : 0) + layers * 2 * sideDim * adapterDim + sideDim * d;
                return new(kind, m, (layers + 1) * VectorBytes(edgeTaps ? d : sideDim, activation), VectorBytes(d, activation), 2 * multiplyAdds);
            }
            case PluginKind.Lst:
            {
                long width = dimensions.LstDimFor(config), hidden = dimensions.LstHiddenDimFor(config);
                // A round trip carries the sent token plus the ones skipped since the last; with m = 0 none happens.
                double tokensPerRoundTrip = m > 0 ? fixedRate / m : 1;
                double ladders = edgeTaps ? (layers + 1) * d * width : 0;
                double blocks = layers * (4 * width * width + 3 * width * hidden + 2 * width * (double)contextTokens);
                // Only the sent token needs the up-projection U (d/r -> d) that makes out.
                double multiplyAdds = tokensPerRoundTrip * (ladders + blocks) + width * d;
                double bytesUp = tokensPerRoundTrip * (layers + 1) * VectorBytes(edgeTaps ? d : width, activation);
                return new(kind, m, bytesUp, VectorBytes(d, activation), 2 * multiplyAdds);
            }
            case PluginKind.Lora:
            {
                // The normalised attention input goes up; delta q (d values) and delta v (kvDim values) come back
                // joined into one vector, so int8 carries a single scale for both (as LoraPlugin sends them).
                long rank = dimensions.LoraRank;
                double multiplyAdds = rank * (d + d) + rank * (d + kvDim);
                return new(kind, m, VectorBytes(d, activation), VectorBytes(d + kvDim, activation), 2 * multiplyAdds);
            }
            case PluginKind.Adapter:
            {
                long bottleneck = dimensions.AdapterBottleneck;
                return new(kind, m, VectorBytes(d, activation), VectorBytes(d, activation), 2 * (2 * d * bottleneck));
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }
}
