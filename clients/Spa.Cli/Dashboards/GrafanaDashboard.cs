using System.Text.Json;

namespace Spa.Cli.Dashboards;

/// <summary>One query of a panel: its PromQL and its legend (Grafana's <c>{{label}}</c> placeholders).</summary>
public sealed record PanelQuery(string Expr, string Legend);

/// <summary>A panel of a dashboard: its title, kind (timeseries, stat), unit, place on Grafana's 24-column grid and queries.</summary>
public sealed record DashboardPanel(string Title, string Kind, string Unit, int X, int Y, int Width, int Height, IReadOnlyList<PanelQuery> Queries);

/// <summary>
/// The parts of a Grafana dashboard (JSON model) that a picture or a check of its queries needs: the title and every
/// panel's queries. Grafana's interval variables are replaced by a fixed window, as Grafana itself would.
/// </summary>
public sealed class GrafanaDashboard
{
    public required string Title { get; init; }
    public required IReadOnlyList<DashboardPanel> Panels { get; init; }

    public static GrafanaDashboard Load(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var root = document.RootElement;
        var panels = new List<DashboardPanel>();
        foreach (var panel in root.GetProperty("panels").EnumerateArray())
        {
            var grid = panel.GetProperty("gridPos");
            var queries = panel.TryGetProperty("targets", out var targets)
                ? targets.EnumerateArray().Select(t => new PanelQuery(t.GetProperty("expr").GetString()!, t.TryGetProperty("legendFormat", out var l) ? l.GetString() ?? "" : "")).ToList()
                : [];
            string unit = panel.TryGetProperty("fieldConfig", out var field) && field.GetProperty("defaults").TryGetProperty("unit", out var u) ? u.GetString() ?? "" : "";
            panels.Add(new DashboardPanel(panel.GetProperty("title").GetString()!, panel.GetProperty("type").GetString()!, unit,
                grid.GetProperty("x").GetInt32(), grid.GetProperty("y").GetInt32(), grid.GetProperty("w").GetInt32(), grid.GetProperty("h").GetInt32(), queries));
        }
        return new GrafanaDashboard { Title = root.GetProperty("title").GetString()!, Panels = panels };
    }

    /// <summary><paramref name="expr"/> with Grafana's interval variables ($__rate_interval, $__interval, $__range) set to <paramref name="window"/> (e.g. "1m").</summary>
    public static string WithWindow(string expr, string window) =>
        expr.Replace("${__rate_interval}", window).Replace("$__rate_interval", window)
            .Replace("${__interval}", window).Replace("$__interval", window)
            .Replace("${__range}", window).Replace("$__range", window);

    /// <summary>A legend such as "p95 {{component}}" for a series with these labels.</summary>
    public static string Legend(string format, IReadOnlyDictionary<string, string> labels)
    {
        if (string.IsNullOrEmpty(format)) return string.Join(", ", labels.Where(l => l.Key != "__name__").Select(l => $"{l.Key}={l.Value}"));
        foreach (var (name, value) in labels) format = format.Replace("{{" + name + "}}", value);
        return format;
    }
}
