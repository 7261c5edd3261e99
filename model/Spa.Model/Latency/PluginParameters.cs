using Spa.Model.Plugins;

namespace Spa.Model.Latency;

/// <summary>Per-user parameter counts from the dimensions, to set each plugin's capacity against the base's.</summary>
public static class PluginParameters
{
    /// <summary>The parameters a user's plugin holds (the gate not included: see <see cref="Gate"/>).</summary>
    public static long Count(LlamaConfig config, PluginKind kind, PluginDimensions dimensions)
    {
        long d = config.Dim, layers = config.Layers, kvDim = config.KvHeads * config.HeadDim;
        switch (kind)
        {
            case PluginKind.Ladder:
            {
                long s = dimensions.SideDim, a = dimensions.AdapterDim;
                // W_in and D_1..D_L (d -> d_s), the adapters V_l (d_s -> a) and U_l (a -> d_s), W_out (d_s -> d); all biased.
                return (layers + 1) * (d * s + s) + layers * (s * a + a + a * s + s) + s * d + d;
            }
            case PluginKind.Lst:
            {
                // An estimate, as LST's exact layout is a choice of its implementation: ladders D_0..D_L (d -> d/r, no
                // bias) with one gate scalar alpha_l per layer; L LLaMA blocks of width w = d/r (q, k, v, o of w x w
                // without grouped keys, an MLP of 3 w x hidden/r, two RMSNorms); a final RMSNorm and U (w -> d).
                long w = dimensions.LstDimFor(config), hidden = dimensions.LstHiddenDimFor(config);
                return (layers + 1) * d * w + layers + layers * (4 * w * w + 3 * w * hidden + 2 * w) + w + w * d;
            }
            case PluginKind.Lora:
            {
                // A (d -> r) and B (r -> out) for q (out d) and v (out kvDim) in every layer; LoRA has no biases.
                long r = dimensions.LoraRank;
                return layers * (r * (d + d) + r * (d + kvDim));
            }
            case PluginKind.Adapter:
            {
                // Two biased bottlenecks (d -> m -> d) in every layer.
                long m = dimensions.AdapterBottleneck;
                return 2 * layers * (2 * d * m + m + d);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    /// <summary>The default gate of switch and spa (it reads n and the token: W_g, 2 x 2d, and a bias). It lives in the cloud with the base.</summary>
    public static long Gate(LlamaConfig config) => Plugins.Gate.WeightCount(config.Dim, GateSettings.Default.Input);

    /// <summary>Everything per-user a mode needs: nothing for base, the plugin, and the gate too when one decides.</summary>
    public static long ForMode(LlamaConfig config, PluginKind kind, CombinationMode mode, PluginDimensions dimensions) => mode switch
    {
        CombinationMode.Base => 0,
        CombinationMode.Side or CombinationMode.Parallel => Count(config, kind, dimensions),
        CombinationMode.Switch or CombinationMode.Spa => Count(config, kind, dimensions) + Gate(config),
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, null),
    };
}
