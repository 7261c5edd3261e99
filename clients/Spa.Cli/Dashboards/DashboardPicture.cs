using ScottPlot;
using SkiaSharp;

namespace Spa.Cli.Dashboards;

/// <summary>
/// A dashboard drawn as one PNG from the same Prometheus queries Grafana runs: every panel in its place on the
/// dashboard's grid, titled as in the dashboard, each query's series as lines over the time range (a stat panel shows
/// its last value in its title). Non-finite points (a quantile or a ratio over an idle window) are left out.
/// </summary>
public static class DashboardPicture
{
    private const int Width = 1800;
    private const int RowHeight = 42; // pixels per unit of Grafana's grid height
    private const int Margin = 4;

    public static async Task Render(GrafanaDashboard dashboard, PrometheusApi prometheus, DateTimeOffset start, DateTimeOffset end, TimeSpan step,
        string window, string path, CancellationToken cancellation)
    {
        const int header = 48;
        int rows = dashboard.Panels.Max(p => p.Y + p.Height);
        using var surface = SKSurface.Create(new SKImageInfo(Width, header + rows * RowHeight));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using (var title = new SKPaint { Color = SKColors.Black, IsAntialias = true })
        using (var font = new SKFont(SKTypeface.Default, 26))
            canvas.DrawText($"{dashboard.Title}   ({start:yyyy-MM-dd HH:mm} to {end:HH:mm} UTC)", 12, 34, font, title);
        float column = Width / 24f;
        foreach (var panel in dashboard.Panels)
        {
            var plot = await PanelPlot(panel, prometheus, start, end, step, window, cancellation);
            // Each panel on its own surface: a plot paints its whole canvas, so it cannot share one.
            using var tile = SKSurface.Create(new SKImageInfo((int)(panel.Width * column) - 2 * Margin, panel.Height * RowHeight - 2 * Margin));
            plot.Render(tile);
            using var picture = tile.Snapshot();
            canvas.DrawImage(picture, panel.X * column + Margin, header + panel.Y * RowHeight + Margin);
        }
        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        await using var file = File.Create(path);
        png.SaveTo(file);
    }

    private static async Task<Plot> PanelPlot(DashboardPanel panel, PrometheusApi prometheus, DateTimeOffset start, DateTimeOffset end, TimeSpan step,
        string window, CancellationToken cancellation)
    {
        var plot = new Plot();
        double? last = null;
        double low = double.PositiveInfinity, high = double.NegativeInfinity;
        foreach (var query in panel.Queries)
        {
            var expr = GrafanaDashboard.WithWindow(query.Expr, window);
            foreach (var series in await prometheus.QueryRange(expr, start, end, step, cancellation))
            {
                var points = series.Points.Where(p => double.IsFinite(p.Value)).ToArray();
                if (points.Length == 0) continue;
                var line = plot.Add.Scatter(points.Select(p => p.Time.UtcDateTime.ToOADate()).ToArray(), points.Select(p => p.Value).ToArray());
                line.MarkerSize = points.Length == 1 ? 5 : 0;
                line.LineWidth = 2;
                line.LegendText = GrafanaDashboard.Legend(query.Legend, series.Labels);
                last = points[^1].Value;
                low = Math.Min(low, points.Min(p => p.Value));
                high = Math.Max(high, points.Max(p => p.Value));
            }
        }
        string unit = panel.Unit is "short" or "" ? "" : panel.Unit;
        plot.Title(panel.Kind == "stat" && last is { } value ? $"{panel.Title}: {Format(value)} {unit}".TrimEnd() : panel.Title, size: 15);
        if (plot.Axes.DateTimeTicksBottom().TickGenerator is ScottPlot.TickGenerators.DateTimeAutomatic ticks)
            ticks.LabelFormatter = time => time.ToString("HH:mm", System.Globalization.CultureInfo.InvariantCulture);
        plot.Axes.SetLimitsX(start.UtcDateTime.ToOADate(), end.UtcDateTime.ToOADate());
        if (unit.Length > 0) plot.YLabel(unit, size: 12);
        // Counts, rates, bytes and times start at zero, as Grafana draws them, so that a flat series reads as its value.
        if (low >= 0 && high > 0) plot.Axes.SetLimitsY(0, high * 1.1);
        if (plot.GetPlottables().Any())
        {
            plot.ShowLegend(Alignment.UpperLeft);
            plot.Legend.FontSize = 11;
        }
        else plot.Add.Annotation("no data");
        return plot;
    }

    private static string Format(double value) => Math.Abs(value) switch
    {
        0 => "0",
        >= 1e6 => (value / 1e6).ToString("0.##", System.Globalization.CultureInfo.InvariantCulture) + "M",
        >= 1e3 => (value / 1e3).ToString("0.##", System.Globalization.CultureInfo.InvariantCulture) + "k",
        >= 0.01 => value.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString("0.###e0", System.Globalization.CultureInfo.InvariantCulture),
    };
}
