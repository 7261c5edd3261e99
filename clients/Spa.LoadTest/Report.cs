using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spa.Grains.Abstractions;
using Spa.Model;
using Spa.Model.Latency;
using Spa.Edge;
using Spa.Model.Plugins;

namespace Spa.LoadTest;

public sealed record LatencySummary(double P50, double P95, double P99, double Mean);

public sealed record FirstTokenSummary(double P50, double P95);

/// <summary>
/// Milliseconds per generated token by where they go. Cloud, edge and network come from the sessions' own counters
/// (measured) or the latency model (predicted edge and network); delivery is the rest of what the client saw: getting
/// each token from its session to the client (an Orleans call per token of the stream), measured per mode, and for the
/// prediction taken from the base mode of the same run.
/// </summary>
public sealed record Breakdown(double Cloud, double Delivery, double Edge, double Network)
{
    public double Total => Cloud + Delivery + Edge + Network;
}

/// <summary>
/// One group of devices in one mode: measured and predicted mean per-token latency for the same requests. The
/// prediction is the latency model's for the group's profiles with each request's own measured cloud time per token
/// and measured M (never its measured total).
/// </summary>
public sealed record GroupFigures(string Group, string Device, string Link, int Requests, long Tokens, double M,
    double MeanTokenLatencyMs, double PredictedTokenLatencyMs, double PredictionError, Breakdown MeasuredMs, Breakdown PredictedMs);

/// <summary>One mode's figures over the measured requests (those started after the warm-up).</summary>
public sealed record ModeFigures(
    SessionMode Mode,
    int Requests,
    int Errors,
    long Tokens,
    double TokensPerS,
    double M,
    LatencySummary TokenLatencyMs,
    double PredictedTokenLatencyMs,
    FirstTokenSummary TtftMs,
    double ParamsPercent,
    double PredictionError,
    Breakdown MeasuredMs,
    Breakdown PredictedMs,
    IReadOnlyList<GroupFigures> Groups,
    IReadOnlyDictionary<string, int> ErrorReasons,
    IReadOnlyList<int> TokensEachSecond);

public sealed record FleetGroupReport(string Name, int Devices, DeviceProfile Device, LinkProfile Link);

public sealed record LoadReport(
    string Model,
    string Target,
    string Shape,
    int Devices,
    int Concurrency,
    double? Rate,
    double DurationSeconds,
    double WarmupSeconds,
    int MaxTokens,
    IReadOnlyList<FleetGroupReport> Fleet,
    double DeliveryMs,
    IReadOnlyList<ModeFigures> Modes,
    double PeakRssMb,
    string Machine,
    IReadOnlyList<LatencyRow>? Projection,
    DrillFigures? Drill);

/// <summary>Turns recorded requests into figures and writes them as JSON, CSV and Markdown.</summary>
public static class Report
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <param name="deliveryMs">Per-token delivery to the client measured in base mode (<see cref="DeliveryMs"/>); 0 when base was not run.</param>
    public static ModeFigures Figures(ModeRecorder recorder, LlamaConfig config, LoadSettings settings, double deliveryMs)
    {
        var measured = recorder.Measured;
        var ok = measured.Where(s => s.Error is null).ToList();
        var latencies = Percentiles.Sorted(ok.SelectMany(s => s.TokenMs));
        var firsts = Percentiles.Sorted(ok.Where(s => s.Tokens > 0).Select(s => s.TokenMs[0]));
        long tokens = ok.Sum(s => (long)s.Tokens);
        var kind = LoadRun.KindFor(recorder.Mode);
        var groups = ok.GroupBy(s => s.Group!).Select(g => Group(g.Key, g.ToList(), config, kind, deliveryMs)).ToList();
        var all = Combine(ok, config, kind, deliveryMs);
        int from = (int)Math.Ceiling(settings.WarmupSeconds), to = (int)Math.Floor(settings.WarmupSeconds + settings.DurationSeconds);
        double throughput = to > from ? recorder.TokensBetween(from, to) / (double)(to - from) : tokens / Math.Max(settings.DurationSeconds, 1e-9);
        double paramsPercent = kind is { } k
            ? 100.0 * PluginParameters.ForMode(config, k, ModeOf(recorder.Mode), PluginDimensions.For(config)) / LatencyModel.BaseModelCost(config).Parameters
            : 0;
        return new ModeFigures(recorder.Mode, measured.Count, measured.Count - ok.Count, tokens, Round(throughput), Round(all.M, 4),
            new LatencySummary(Round(Percentiles.Of(latencies, 50)), Round(Percentiles.Of(latencies, 95)), Round(Percentiles.Of(latencies, 99)), Round(all.Measured)),
            Round(all.Predicted), new FirstTokenSummary(Round(Percentiles.Of(firsts, 50)), Round(Percentiles.Of(firsts, 95))),
            Round(paramsPercent, 3), Round(all.Predicted / all.Measured - 1, 4), all.MeasuredMs, all.PredictedMs, groups, recorder.Errors, recorder.TokensEachSecond);
    }

    /// <summary>The mode a plugin kind is counted in: lora and adapter are their kind's parallel.</summary>
    public static CombinationMode ModeOf(SessionMode mode) => mode.IsSplit() ? CombinationMode.Parallel : mode.ToCombination();

    private sealed record Combined(double M, double Measured, double Predicted, Breakdown MeasuredMs, Breakdown PredictedMs);

    /// <summary>
    /// What it costs to hand a token from its session to the client, per token: in base mode (no device, no link) the
    /// client's mean per-token latency minus the sessions' own time per token. The latency model has no term for it, so
    /// the prediction of every mode adds this figure, measured in the same run, to the mode's measured cloud time.
    /// </summary>
    public static double DeliveryMs(ModeRecorder baseRecorder)
    {
        var ok = baseRecorder.Measured.Where(s => s.Error is null && s.Status!.GeneratedTokens > 0).ToList();
        double tokens = ok.Sum(s => (double)s.Status!.GeneratedTokens);
        return tokens == 0 ? 0 : Math.Max(0, ok.Sum(s => s.TotalMs - s.Status!.TotalMs) / tokens);
    }

    private static GroupFigures Group(DeviceGroup group, List<RequestSample> samples, LlamaConfig config, PluginKind? kind, double deliveryMs)
    {
        var c = Combine(samples, config, kind, deliveryMs);
        return new GroupFigures(group.Name, group.Device.Name, group.Link.Name, samples.Count, samples.Sum(s => (long)s.Tokens), Round(c.M, 4),
            Round(c.Measured), Round(c.Predicted), Round(c.Predicted / c.Measured - 1, 4), c.MeasuredMs, c.PredictedMs);
    }

    /// <summary>
    /// Token-weighted means over the requests: each request's measured latency per token (the client's clock) against
    /// the latency model with that request's measured cloud time and M on its device's profiles, plus the delivery
    /// measured in base mode.
    /// </summary>
    private static Combined Combine(IReadOnlyList<RequestSample> samples, LlamaConfig config, PluginKind? kind, double deliveryMs)
    {
        double tokens = 0, transmissions = 0, measured = 0, cloud = 0, edge = 0, network = 0, predictedEdge = 0, predictedNetwork = 0;
        var traffic = kind is { } k ? PluginTraffic.For(config, k, PluginDimensions.For(config), TapPlacement.Edge, ActivationType.Fp32) : null;
        foreach (var sample in samples)
        {
            var status = sample.Status!;
            if (status.GeneratedTokens == 0) continue;
            tokens += status.GeneratedTokens;
            transmissions += status.Edge.Transmissions;
            measured += sample.TotalMs;
            cloud += status.CloudMs;
            edge += status.Edge.EdgeMs;
            network += status.Edge.NetworkMs;
            if (traffic is null) continue;
            var predicted = LatencyModel.Predict(0, status.M, traffic, sample.Group!.Device, sample.Group.Link);
            predictedEdge += predicted.EdgeMs * status.GeneratedTokens;
            predictedNetwork += predicted.NetworkMs * status.GeneratedTokens;
        }
        var none = new Breakdown(double.NaN, double.NaN, double.NaN, double.NaN);
        if (tokens == 0) return new Combined(double.NaN, double.NaN, double.NaN, none, none);
        var measuredMs = new Breakdown(Round(cloud / tokens), Round((measured - cloud - edge - network) / tokens), Round(edge / tokens), Round(network / tokens));
        var predictedMs = new Breakdown(Round(cloud / tokens), Round(deliveryMs), Round(predictedEdge / tokens), Round(predictedNetwork / tokens));
        return new Combined(transmissions / tokens, measured / tokens, cloud / tokens + deliveryMs + (predictedEdge + predictedNetwork) / tokens, measuredMs, predictedMs);
    }

    private static double Round(double value, int digits = 3) => double.IsFinite(value) ? Math.Round(value, digits) : value;

    public static string ToJson(LoadReport report) => JsonSerializer.Serialize(report, Json) + Environment.NewLine;

    /// <summary>One row per mode and device group (the group "all" is the whole fleet).</summary>
    public static string ToCsv(LoadReport report)
    {
        var text = new StringBuilder("mode,group,requests,errors,tokens,tokens_per_s,m,token_p50_ms,token_p95_ms,token_p99_ms,token_mean_ms,predicted_mean_ms," +
            "prediction_error,ttft_p50_ms,ttft_p95_ms,cloud_ms,delivery_ms,edge_ms,network_ms,predicted_delivery_ms,predicted_edge_ms,predicted_network_ms,params_percent\n");
        foreach (var m in report.Modes)
        {
            Line(WireNames.Of(m.Mode), "all", m.Requests, m.Errors, m.Tokens, m.TokensPerS, m.M, m.TokenLatencyMs.P50, m.TokenLatencyMs.P95, m.TokenLatencyMs.P99,
                m.TokenLatencyMs.Mean, m.PredictedTokenLatencyMs, m.PredictionError, m.TtftMs.P50, m.TtftMs.P95,
                m.MeasuredMs.Cloud, m.MeasuredMs.Delivery, m.MeasuredMs.Edge, m.MeasuredMs.Network, m.PredictedMs.Delivery, m.PredictedMs.Edge, m.PredictedMs.Network, m.ParamsPercent);
            foreach (var g in m.Groups)
                Line(WireNames.Of(m.Mode), g.Group, g.Requests, null, g.Tokens, null, g.M, null, null, null, g.MeanTokenLatencyMs, g.PredictedTokenLatencyMs, g.PredictionError,
                    null, null, g.MeasuredMs.Cloud, g.MeasuredMs.Delivery, g.MeasuredMs.Edge, g.MeasuredMs.Network, g.PredictedMs.Delivery, g.PredictedMs.Edge, g.PredictedMs.Network, m.ParamsPercent);
        }
        return text.ToString();

        void Line(string mode, string group, params double?[] values) =>
            text.AppendLine(string.Join(",", new[] { mode, group }.Concat(values.Select(v => v is { } x && double.IsFinite(x) ? x.ToString("G6", CultureInfo.InvariantCulture) : ""))));
    }

    /// <summary>The run's settings, the measured figures per mode, and measured against predicted per mode and device group.</summary>
    public static string ToMarkdown(LoadReport report)
    {
        var text = new StringBuilder();
        text.AppendLine($"# spa-load: {report.Model}, {report.Target}");
        text.AppendLine();
        text.AppendLine($"{report.Shape}; {report.Devices} devices ({string.Join(", ", report.Fleet.Select(g => $"{g.Devices} {g.Name}"))}); " +
            $"{report.DurationSeconds:0.#} s per mode after {report.WarmupSeconds:0.#} s of warm-up; up to {report.MaxTokens} tokens per request; " +
            $"peak RSS {report.PeakRssMb:N0} MB; {report.Machine}.");
        text.AppendLine();
        text.AppendLine("| mode | requests | errors | tokens | tokens/s | M | token p50 / p95 / p99 ms | mean ms | predicted ms | TTFT p50 / p95 ms |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var m in report.Modes)
            text.AppendLine($"| {WireNames.Of(m.Mode)} | {m.Requests:N0} | {m.Errors:N0} | {m.Tokens:N0} | {F(m.TokensPerS)} | {F(m.M)} | " +
                $"{F(m.TokenLatencyMs.P50)} / {F(m.TokenLatencyMs.P95)} / {F(m.TokenLatencyMs.P99)} | {F(m.TokenLatencyMs.Mean)} | {F(m.PredictedTokenLatencyMs)} | " +
                $"{F(m.TtftMs.P50)} / {F(m.TtftMs.P95)} |");
        text.AppendLine();
        text.AppendLine("Measured against the latency model, per device group (ms per token; the model is given each request's measured cloud time and M, " +
            "and the delivery to the client measured in base mode):");
        text.AppendLine();
        text.AppendLine("| mode | group | params % | M | cloud | delivery measured / model | edge measured / model | network measured / model | total measured | total model | model vs measured |");
        text.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var m in report.Modes)
            foreach (var g in m.Groups)
                text.AppendLine($"| {WireNames.Of(m.Mode)} | {g.Group} | {F(m.ParamsPercent)} | {F(g.M)} | {F(g.MeasuredMs.Cloud)} | {F(g.MeasuredMs.Delivery)} / {F(g.PredictedMs.Delivery)} | {F(g.MeasuredMs.Edge)} / {F(g.PredictedMs.Edge)} | " +
                    $"{F(g.MeasuredMs.Network)} / {F(g.PredictedMs.Network)} | {F(g.MeanTokenLatencyMs)} | {F(g.PredictedTokenLatencyMs)} | {Math.Round(g.PredictionError * 100, 1):+0.0;-0.0;0.0}% |");
        if (report.Drill is { } drill)
        {
            text.AppendLine();
            text.AppendLine($"Fault drill: {drill.Identical:N0} of {drill.Requests:N0} requests delivered exactly the tokens of the same request run undisturbed afterwards; " +
                $"{drill.Failed:N0} failed; {drill.TokensLost:N0} tokens lost, {drill.TokensExtra:N0} extra (repeated or different). Per fault, the requests in flight when it fired:");
            text.AppendLine();
            text.AppendLine("| fault | at s | outcome | in flight | completed | failed | resumed | tokens lost | tokens extra | recovery max / median ms |");
            text.AppendLine("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var f in drill.Faults)
                text.AppendLine($"| `{f.Fault.Replace("|", "\\|", StringComparison.Ordinal)}` | {F(f.AtSeconds)} | {f.Outcome.Replace("|", "\\|", StringComparison.Ordinal)} | {f.InFlight:N0} | {f.Completed:N0} | {f.Failed:N0} | " +
                    $"{f.Resumed:N0} | {f.TokensLost:N0} | {f.TokensExtra:N0} | {F(f.RecoveryMaxMs ?? double.NaN)} / {F(f.RecoveryMedianMs ?? double.NaN)} |");
        }
        if (report.Projection is { } projection)
        {
            text.AppendLine();
            text.AppendLine("Projection onto LLaMA-7B's dimensions (the latency model only: no such model was run; cloud time analytic on an A100 profile, M as measured):");
            text.AppendLine();
            text.Append(LatencyTable.ToMarkdown(projection));
        }
        return text.ToString();
    }

    private static string F(double value) =>
        !double.IsFinite(value) ? "-" : value.ToString(Math.Abs(value) < 10 ? "0.###" : "#,0.#", CultureInfo.InvariantCulture);
}
