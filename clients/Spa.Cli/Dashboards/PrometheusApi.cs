using System.Globalization;
using System.Text.Json;

namespace Spa.Cli.Dashboards;

/// <summary>One series of a query's answer: its labels and its (time, value) points (one point for an instant query).</summary>
public sealed record PrometheusSeries(IReadOnlyDictionary<string, string> Labels, IReadOnlyList<(DateTimeOffset Time, double Value)> Points);

/// <summary>Prometheus' HTTP query API (<c>/api/v1/query</c>, <c>/api/v1/query_range</c>).</summary>
public sealed class PrometheusApi(HttpClient http)
{
    /// <summary>The instant vector of <paramref name="expr"/> now, or at <paramref name="at"/>.</summary>
    public Task<IReadOnlyList<PrometheusSeries>> Query(string expr, CancellationToken cancellation, DateTimeOffset? at = null)
    {
        var query = $"api/v1/query?query={Uri.EscapeDataString(expr)}";
        if (at is { } time) query += "&time=" + Seconds(time);
        return Get(query, expr, cancellation);
    }

    /// <summary>The range of <paramref name="expr"/> from <paramref name="start"/> to <paramref name="end"/>, a point every <paramref name="step"/>.</summary>
    public Task<IReadOnlyList<PrometheusSeries>> QueryRange(string expr, DateTimeOffset start, DateTimeOffset end, TimeSpan step, CancellationToken cancellation) =>
        Get($"api/v1/query_range?query={Uri.EscapeDataString(expr)}&start={Seconds(start)}&end={Seconds(end)}&step={step.TotalSeconds.ToString(CultureInfo.InvariantCulture)}",
            expr, cancellation);

    private static string Seconds(DateTimeOffset time) => (time.ToUnixTimeMilliseconds() / 1000.0).ToString("F3", CultureInfo.InvariantCulture);

    private async Task<IReadOnlyList<PrometheusSeries>> Get(string query, string expr, CancellationToken cancellation)
    {
        using var response = await http.GetAsync(query, cancellation);
        var text = await response.Content.ReadAsStringAsync(cancellation);
        JsonElement root;
        try
        {
            root = JsonDocument.Parse(text).RootElement;
        }
        catch (JsonException)
        {
            throw new InvalidOperationException($"Prometheus answered {(int)response.StatusCode} without JSON to '{expr}': {text}");
        }
        if (root.GetProperty("status").GetString() != "success")
            throw new InvalidOperationException($"Prometheus refused '{expr}': {root.GetProperty("error").GetString()}");
        var data = root.GetProperty("data");
        var result = data.GetProperty("result");
        return data.GetProperty("resultType").GetString() switch
        {
            "vector" => [.. result.EnumerateArray().Select(s => new PrometheusSeries(Labels(s), [Point(s.GetProperty("value"))]))],
            "matrix" => [.. result.EnumerateArray().Select(s => new PrometheusSeries(Labels(s), [.. s.GetProperty("values").EnumerateArray().Select(Point)]))],
            "scalar" => [new PrometheusSeries(new Dictionary<string, string>(), [Point(result)])],
            var kind => throw new InvalidOperationException($"'{expr}' gives a {kind}, not a vector, matrix or scalar"),
        };
    }

    private static Dictionary<string, string> Labels(JsonElement series) =>
        series.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);

    /// <summary>[unix seconds, "value"]; the value may be NaN or ±Inf.</summary>
    private static (DateTimeOffset, double) Point(JsonElement pair) =>
        (DateTimeOffset.FromUnixTimeMilliseconds((long)Math.Round(pair[0].GetDouble() * 1000)),
         pair[1].GetString() switch
         {
             "+Inf" => double.PositiveInfinity,
             "-Inf" => double.NegativeInfinity,
             var value => double.Parse(value!, NumberStyles.Float, CultureInfo.InvariantCulture),
         });
}
