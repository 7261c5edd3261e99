namespace Spa.Model.Latency;

/// <summary>
/// Mean latency of one generated token, split by where the time goes. <see cref="EdgeMs"/> and
/// <see cref="NetworkMs"/> are per token, i.e. already M times the cost of one round trip; the network part is the
/// round-trip time plus the transfer times both ways.
/// </summary>
public sealed record LatencyBreakdown(double CloudMs, double EdgeMs, double NetworkMs, double TotalMs, double M);

/// <summary>The size of a base and what one decoding step of it costs.</summary>
/// <param name="Parameters">Every weight, the output head included when it is not tied to the embedding.</param>
/// <param name="ParametersReadPerToken">The weights a decoding step reads: all but an untied input embedding, of
/// which a step reads a single row.</param>
public sealed record ModelCost(long Parameters, long ParametersReadPerToken, int Layers, int Dim, int KvDim)
{
    /// <summary>
    /// Two FLOPs per weight read (every read weight is used in one multiply-add), plus attention over the context:
    /// q.k and the weighted sum of v are d multiply-adds per context position each, in every layer.
    /// </summary>
    public double FlopsPerToken(int contextTokens) =>
        2.0 * ParametersReadPerToken + 4.0 * Layers * Dim * Checks.NonNegative(contextTokens, nameof(contextTokens));

    /// <summary>The weights plus the keys and values of the context, all stored with <paramref name="bytesPerValue"/>.</summary>
    public double BytesPerToken(int contextTokens, double bytesPerValue) =>
        (ParametersReadPerToken + 2.0 * Layers * KvDim * Checks.NonNegative(contextTokens, nameof(contextTokens))) * bytesPerValue;
}

/// <summary>
/// The latency model of docs/method.md:
/// <code>
///   T_token = T_cloud + M * (T_edge + (RTT + bytes_up / BW_up + bytes_down / BW_down) / (1 - loss))
///   T_edge  = FLOPs_side / (n_cores * C)
/// </code>
/// A lossless link (loss 0) gives the formula of docs/method.md; a lost transmission costs one more round trip.
/// </summary>
public static class LatencyModel
{
    /// <summary>
    /// Parameter count of a LLaMA decoder from its dimensions: the embedding (and an untied head), per layer q and o
    /// (d x d), k and v (d x kvDim, smaller under grouped-query attention), the three MLP matrices and two RMSNorms,
    /// and the final RMSNorm.
    /// </summary>
    public static ModelCost BaseModelCost(LlamaConfig config)
    {
        long d = config.Dim, layers = config.Layers, kvDim = config.KvHeads * config.HeadDim;
        long embedding = config.VocabSize * d;
        long perLayer = 2 * d * d + 2 * d * kvDim + 3 * d * config.HiddenDim + 2 * d;
        long parameters = embedding + (config.TiedEmbedding ? 0 : embedding) + layers * perLayer + d;
        long read = config.TiedEmbedding ? parameters : parameters - embedding;
        return new ModelCost(parameters, read, config.Layers, config.Dim, (int)kvDim);
    }

    /// <summary>
    /// Analytic cloud time of one batch-1 decoding step: the slower of doing the arithmetic and streaming the weights
    /// and the KV cache from memory. Prefer a measured time where the base really runs.
    /// </summary>
    public static double CloudSecondsPerToken(LlamaConfig config, CloudProfile cloud, int contextTokens)
    {
        var cost = BaseModelCost(config);
        return Math.Max(
            cost.FlopsPerToken(contextTokens) / cloud.Flops,
            cost.BytesPerToken(contextTokens, cloud.BytesPerParameter) / cloud.MemoryBandwidthBytesPerS);
    }

    /// <param name="cloudSecondsPerToken">Measured or analytic time of the base's step for one token.</param>
    /// <param name="roundTripsPerToken">M: the plugin's fixed rate, or the measured rate when a gate decides.</param>
    public static LatencyBreakdown Predict(double cloudSecondsPerToken, double roundTripsPerToken, PluginTraffic traffic, DeviceProfile device, LinkProfile link)
    {
        Checks.NonNegative(cloudSecondsPerToken, nameof(cloudSecondsPerToken));
        double m = Checks.NonNegative(roundTripsPerToken, nameof(roundTripsPerToken));
        double cloudMs = cloudSecondsPerToken * 1e3;
        double edgeMs = m * (traffic.EdgeFlops / device.Flops * 1e3);
        double networkMs = m * link.AttemptsPerRoundTrip * (link.RoundTripMs + link.UpMs(traffic.BytesUp) + link.DownMs(traffic.BytesDown));
        return new LatencyBreakdown(cloudMs, edgeMs, networkMs, cloudMs + edgeMs + networkMs, m);
    }

    /// <summary><see cref="Predict(double, double, PluginTraffic, DeviceProfile, LinkProfile)"/> with the analytic cloud time.</summary>
    public static LatencyBreakdown Predict(
        LlamaConfig config,
        CloudProfile cloud,
        int contextTokens,
        double roundTripsPerToken,
        PluginTraffic traffic,
        DeviceProfile device,
        LinkProfile link) =>
        Predict(CloudSecondsPerToken(config, cloud, contextTokens), roundTripsPerToken, traffic, device, link);
}
