using ScottPlot;
using Spa.Grains.Abstractions;

namespace Spa.LoadTest;

/// <summary>The report's figures as PNG files: latency CDF per mode, throughput over time, and where each mode's time goes.</summary>
public static class Plots
{
    private const int Width = 900, Height = 560;

    /// <summary>Writes <c>{stem}-cdf.png</c>, <c>{stem}-throughput.png</c> and <c>{stem}-breakdown.png</c>; returns their paths.</summary>
    public static IReadOnlyList<string> Write(string stem, LoadReport report, IReadOnlyDictionary<SessionMode, float[]> sortedLatencies)
    {
        string cdf = stem + "-cdf.png", throughput = stem + "-throughput.png", breakdown = stem + "-breakdown.png";
        Cdf(cdf, report, sortedLatencies);
        Throughput(throughput, report);
        Breakdown(breakdown, report);
        return [cdf, throughput, breakdown];
    }

    private static void Cdf(string path, LoadReport report, IReadOnlyDictionary<SessionMode, float[]> sortedLatencies)
    {
        var plot = new Plot();
        foreach (var mode in report.Modes)
        {
            if (!sortedLatencies.TryGetValue(mode.Mode, out var sorted) || sorted.Length == 0) continue;
            // At most ~2,000 points a curve: enough for a smooth line, small enough for a quick file.
            int step = Math.Max(1, sorted.Length / 2000);
            var xs = new List<double>();
            var ys = new List<double>();
            for (int i = 0; i < sorted.Length; i += step)
            {
                xs.Add(sorted[i]);
                ys.Add((i + 1.0) / sorted.Length);
            }
            xs.Add(sorted[^1]);
            ys.Add(1);
            Line(plot, WireNames.Of(mode.Mode), xs, ys);
        }
        Save(plot, path, $"Per-token latency, {report.Model} ({report.Shape})", "latency of a token (ms)", "fraction of tokens at or below", Alignment.LowerRight);
    }

    private static void Throughput(string path, LoadReport report)
    {
        var plot = new Plot();
        foreach (var mode in report.Modes.Where(m => m.TokensEachSecond.Count > 0))
            Line(plot, WireNames.Of(mode.Mode), Enumerable.Range(0, mode.TokensEachSecond.Count).Select(s => s + 0.5), mode.TokensEachSecond.Select(n => (double)n));
        var warmup = plot.Add.VerticalLine(report.WarmupSeconds);
        warmup.LinePattern = LinePattern.Dashed;
        warmup.LegendText = "end of warm-up";
        Save(plot, path, "Throughput over time (each mode from its own start)", "seconds since the mode started", "tokens per second", Alignment.UpperRight);
    }

    private static void Line(Plot plot, string label, IEnumerable<double> xs, IEnumerable<double> ys)
    {
        var line = plot.Add.ScatterLine(xs.ToArray(), ys.ToArray());
        line.LegendText = label;
        line.LineWidth = 2;
    }

    private static void Save(Plot plot, string path, string title, string x, string y, Alignment legend, int width = Width)
    {
        plot.Title(title);
        plot.XLabel(x);
        plot.YLabel(y);
        plot.ShowLegend(legend);
        plot.SavePng(path, width, Height);
    }

    private static void Breakdown(string path, LoadReport report)
    {
        var plot = new Plot();
        var parts = new (string Name, Color Color, Func<Breakdown, double> Value)[]
        {
            ("cloud", Colors.SteelBlue, b => b.Cloud),
            ("delivery", Colors.Gray, b => b.Delivery),
            ("edge", Colors.DarkOrange, b => b.Edge),
            ("network", Colors.SeaGreen, b => b.Network),
        };
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        for (int i = 0; i < report.Modes.Count; i++)
        {
            var mode = report.Modes[i];
            // Two bars per mode: measured (the sessions' counters) and the latency model's prediction.
            foreach (var (breakdown, offset, label) in new[] { (mode.MeasuredMs, -0.2, "measured"), (mode.PredictedMs, 0.2, "model") })
            {
                double bottom = 0;
                foreach (var (_, color, value) in parts)
                {
                    double v = double.IsFinite(value(breakdown)) ? value(breakdown) : 0;
                    bars.Add(new Bar { Position = i + offset, ValueBase = bottom, Value = bottom + v, FillColor = color, Size = 0.35 });
                    bottom += v;
                }
                ticks.Add(new Tick(i + offset, $"{WireNames.Of(mode.Mode)}\n{label}"));
            }
        }
        plot.Add.Bars(bars);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual([.. ticks]);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        foreach (var (name, color, _) in parts)
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = name, FillColor = color });
        plot.Axes.Margins(bottom: 0);
        Save(plot, path, "Where a token's time goes, per mode: measured and the latency model's", "", "ms per token (mean)", Alignment.UpperLeft, Width + 200);
    }
}
