using System.CommandLine;
using System.Globalization;
using System.Text;
using Spa.CommandLine;
using Spa.Model.Evaluation;
using Spa.Model.Plugins;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa sweep-tau</c>: quality and M of a gated plugin for a range of tau, with the base and parallel as the two
/// ends: the quality-versus-round-trips curve that is the method's headline result, as CSV and as a plot.
/// </summary>
public static class SweepTauCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var task = new TaskArguments();
        var plugin = new Option<string>("--plugin") { Description = "A plugin trained with a gate (mode spa or switch).", Required = true };
        var mode = new Option<string>("--mode") { Description = "spa or switch (default: the plugin's mode).", };
        var taus = new Option<string>("--taus") { Description = "Comma-separated tau values.", DefaultValueFactory = _ => "0,0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1" };
        var beams = new Option<int>("--beams") { Description = "Beam width for generation tasks.", DefaultValueFactory = _ => 4 };
        var limit = new Option<int>("--limit") { Description = "Evaluate at most this many test examples.", DefaultValueFactory = _ => 50 };
        var csv = new Option<string>("--csv") { Description = "Write the curve here.", Required = true };
        var png = new Option<string?>("--png") { Description = "Plot the curve here." };

        var command = new Command("sweep-tau", "Trace quality against round trips per token (M) over the gate threshold tau.");
        model.AddTo(command);
        task.AddTo(command);
        foreach (var option in new Option[] { plugin, mode, taus, beams, limit, csv, png })
            command.Options.Add(option);
        command.SetGuardedAction((result, cancellation) =>
        {
            var values = result.GetValue(taus)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v is >= 0 and <= 1
                    ? v : throw new UsageException($"--taus: '{t}' is not a number in [0, 1]"))
                .ToArray();
            int count = result.GetValue(limit);
            if (values.Length == 0 || count <= 0) throw new UsageException("--taus needs at least one value and --limit must be positive");
            using var llama = model.LoadModel(result);
            var tokenizer = model.LoadTokenizer(result, llama);
            using var gated = PersonalPlugin.Load(result.GetValue(plugin)!, llama);
            var gatedMode = result.GetValue(mode) is { } m ? PluginNames.ParseMode(m) : gated.Mode;
            if (gatedMode is not (CombinationMode.Spa or CombinationMode.Switch) || gated.Gate is null)
                throw new UsageException("sweep-tau needs a plugin with a gate, evaluated in mode spa or switch");
            var settings = new EvaluationSettings { Beams = result.GetValue(beams) };

            var evaluate = task.TestEvaluator(result, llama, tokenizer, count, cancellation);
            var baseline = evaluate(null, CombinationMode.Base, settings);
            var parallel = evaluate(gated, gatedMode == CombinationMode.Spa ? CombinationMode.Parallel : CombinationMode.Side, settings);
            var curve = new List<EvaluationRow>();
            using (var line = new ProgressLine())
            {
                foreach (var tau in values)
                {
                    line.Update($"tau {tau:0.###}: {curve.Count + 1}/{values.Length}", force: true);
                    curve.Add(evaluate(gated, gatedMode, settings with { Tau = tau }));
                }
            }

            var text = new StringBuilder("tau,m,score,gate_recall,gate_precision,bytes_up_per_token,bytes_down_per_token\n");
            foreach (var row in curve)
                text.AppendLine(string.Join(",", new double?[] { row.Tau, row.M, row.Score, row.GateRecall, row.GatePrecision, row.BytesUpPerToken, row.BytesDownPerToken }
                    .Select(v => v is { } x && double.IsFinite(x) ? x.ToString("G6", CultureInfo.InvariantCulture) : "")));
            File.WriteAllText(result.GetValue(csv)!, text.ToString());
            Console.Out.Write(EvalCommand.Table([baseline, parallel, .. curve]));
            if (result.GetValue(png) is { } path) Plot(path, task.Name(result), gatedMode, baseline, parallel, curve);
            return Task.FromResult(0);
        });
        return command;
    }

    private static void Plot(string path, string task, CombinationMode mode, EvaluationRow baseline, EvaluationRow parallel, IReadOnlyList<EvaluationRow> curve)
    {
        var plot = new ScottPlot.Plot();
        var points = curve.Where(r => r.Score is { } s && double.IsFinite(s)).OrderBy(r => r.M).ToArray();
        var line = plot.Add.Scatter(points.Select(r => r.M).ToArray(), points.Select(r => r.Score!.Value).ToArray());
        line.LegendText = $"{PluginNames.Name(mode)} over tau";
        var ends = plot.Add.Scatter(new[] { baseline.M, parallel.M }, new[] { baseline.Score ?? double.NaN, parallel.Score ?? double.NaN });
        ends.LineWidth = 0;
        ends.MarkerSize = 10;
        ends.LegendText = "base (M = 0) and parallel (M = 1)";
        plot.Title($"{task}: quality against round trips per token");
        plot.XLabel("M, round trips to the edge per generated token");
        plot.YLabel(task == TaskArguments.Personal ? "private-token accuracy (%)" : "score");
        plot.ShowLegend();
        plot.SavePng(path, 900, 560);
    }
}
