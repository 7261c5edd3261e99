using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Spa.LoadTest;

/// <summary>
/// The figures of an HTTP load run under the names the common serving benchmarks use (vLLM's <c>benchmark_serving</c>
/// result file), so that a run against this server and one against another compare key by key: throughput in
/// requests and tokens per second, goodput (requests per second that met every <c>--slo</c> target), and per metric
/// (ttft, tpot, itl, e2el) the mean, median, standard deviation and p90, p95 and p99 in milliseconds; then the
/// per-request lists (<c>input_lens</c>, <c>output_lens</c>, <c>ttfts</c> and <c>itls</c> in seconds, as theirs).
/// </summary>
public static class HttpReport
{
    private static readonly string[] Metrics = ["ttft", "tpot", "itl", "e2el"];

    public static Dictionary<string, object?> Summary(HttpLoadSettings settings, string model, IReadOnlyList<HttpSample> samples, double seconds)
    {
        var done = samples.Where(s => s.Error is null).ToList();
        int good = done.Count(settings.Slo.Met);
        long input = done.Sum(s => (long)s.InputTokens), output = done.Sum(s => (long)s.OutputTokens);
        var summary = new Dictionary<string, object?>
        {
            ["date"] = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture),
            ["backend"] = settings.Chat ? "openai-chat" : "openai",
            ["endpoint"] = settings.BaseUrl + (settings.Chat ? "v1/chat/completions" : "v1/completions"),
            ["model_id"] = model,
            ["num_prompts"] = samples.Count,
            ["request_rate"] = settings.Rate is { } rate ? rate : "inf",
            ["max_concurrency"] = settings.Rate is null ? settings.Concurrency : null,
            ["max_tokens"] = settings.MaxTokens,
            ["duration"] = Round(seconds),
            ["completed"] = done.Count,
            ["failed"] = samples.Count - done.Count,
            ["total_input_tokens"] = input,
            ["total_output_tokens"] = output,
            ["request_throughput"] = Round(done.Count / seconds),
            ["request_goodput"] = Round(good / seconds),
            ["goodput_slo"] = settings.Slo.ToString(),
            ["output_throughput"] = Round(output / seconds),
            ["total_token_throughput"] = Round((input + output) / seconds),
        };
        foreach (var metric in Metrics)
        {
            var values = metric switch
            {
                "ttft" => done.Select(s => s.TtftMs),
                "tpot" => done.Where(s => s.OutputTokens > 1).Select(s => s.TpotMs),
                "itl" => done.SelectMany(s => s.ItlMs.Select(v => (double)v)),
                _ => done.Select(s => s.E2elMs),
            };
            var sorted = values.Order().ToArray();
            double mean = sorted.Length == 0 ? double.NaN : sorted.Average();
            summary[$"mean_{metric}_ms"] = Round(mean);
            summary[$"median_{metric}_ms"] = Round(Quantile(sorted, 0.5));
            summary[$"std_{metric}_ms"] = Round(sorted.Length == 0 ? double.NaN : Math.Sqrt(sorted.Average(v => (v - mean) * (v - mean))));
            foreach (var p in new[] { 90, 95, 99 }) summary[$"p{p}_{metric}_ms"] = Round(Quantile(sorted, p / 100.0));
        }
        summary["errors"] = samples.Where(s => s.Error is not null).GroupBy(s => s.Error!).ToDictionary(g => g.Key, g => g.Count());
        summary["input_lens"] = done.Select(s => s.InputTokens).ToList();
        summary["output_lens"] = done.Select(s => s.OutputTokens).ToList();
        summary["ttfts"] = done.Select(s => Round(s.TtftMs / 1000, 6)).ToList();
        summary["itls"] = done.Select(s => s.ItlMs.Select(v => Round(v / 1000.0, 6)).ToList()).ToList();
        return summary;
    }

    public static string ToJson(Dictionary<string, object?> summary) =>
        JsonSerializer.Serialize(summary, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }) + Environment.NewLine;

    public static string ToMarkdown(Dictionary<string, object?> summary)
    {
        string F(string key) => summary[key] switch
        {
            double d when double.IsFinite(d) => d.ToString(Math.Abs(d) < 10 ? "0.###" : "#,0.#", CultureInfo.InvariantCulture),
            double or null => "-",
            var v => Convert.ToString(v, CultureInfo.InvariantCulture)!,
        };
        var text = new StringBuilder();
        text.AppendLine($"# spa-load: {summary["model_id"]} at {summary["endpoint"]}");
        text.AppendLine();
        text.AppendLine($"{F("completed")} of {F("num_prompts")} requests completed in {F("duration")} s ({F("failed")} failed); " +
            $"request rate {F("request_rate")}, max concurrency {F("max_concurrency")}, up to {F("max_tokens")} tokens each.");
        text.AppendLine();
        text.AppendLine("| requests/s | goodput/s | output tokens/s | total tokens/s | SLO |");
        text.AppendLine("|---:|---:|---:|---:|---|");
        text.AppendLine($"| {F("request_throughput")} | {F("request_goodput")} | {F("output_throughput")} | {F("total_token_throughput")} | {F("goodput_slo")} |");
        text.AppendLine();
        text.AppendLine("| ms | mean | median | std | p90 | p95 | p99 |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var m in Metrics)
            text.AppendLine($"| {m.ToUpperInvariant()} | {F($"mean_{m}_ms")} | {F($"median_{m}_ms")} | {F($"std_{m}_ms")} | {F($"p90_{m}_ms")} | {F($"p95_{m}_ms")} | {F($"p99_{m}_ms")} |");
        if (summary["errors"] is Dictionary<string, int> { Count: > 0 } errors)
        {
            text.AppendLine();
            text.AppendLine("Errors: " + string.Join("; ", errors.Select(e => $"{e.Value} x {e.Key}")));
        }
        return text.ToString();
    }

    /// <summary>Linear interpolation between the closest ranks, as numpy's percentile (what the common benchmarks report).</summary>
    private static double Quantile(double[] sorted, double q)
    {
        if (sorted.Length == 0) return double.NaN;
        double position = q * (sorted.Length - 1);
        int below = (int)Math.Floor(position);
        int above = Math.Min(below + 1, sorted.Length - 1);
        return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
    }

    private static double Round(double value, int digits = 3) => double.IsFinite(value) ? Math.Round(value, digits) : value;
}
