using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spa.Model.Evaluation;

namespace Spa.Cli.MethodStudy;

/// <summary>How the study's files are written: snake_case fields, enums as the command line spells them, NaN allowed.</summary>
public static class StudyJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };
}

/// <summary>A mean over users with its 95% interval, for the JSON summary.</summary>
public sealed record Summary(double Mean, double Low, double High, int Users)
{
    public static Summary Of(IEnumerable<double> values)
    {
        var m = MeanInterval.Of(values);
        return new Summary(m.Mean, m.Low, m.High, m.Count);
    }
}

/// <summary>
/// The study's results over all users: means with 95% intervals (Student's t over users) of every figure, Table 3 beside
/// the paper's, the gate variants at their own tau and at fixed M, the free-running figures, the data-size sweep, and
/// the targets of the method. Written as Markdown, JSON and a plot of the mean quality-versus-M curves.
/// </summary>
public sealed class StudyReport(StudySettings settings, IReadOnlyList<UserFigures> users)
{
    /// <summary>The M at which every gated plugin's test curve is read, per user, by linear interpolation.</summary>
    public static readonly double[] MGrid = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5];

    // The paper's Table 3 (LLaMA-7B): M and, per setting, the share of S1's score averaged over its four tasks.
    private static readonly Dictionary<string, (string M, string Share)> Paper = new()
    {
        ["side"] = ("1.0", "81.8%"),
        ["parallel"] = ("1.0", "100%"),
        ["switch"] = ("0.68", "85.5%"),
        ["spa"] = ("0.62", "97.2%"),
    };

    public object Json() => new
    {
        settings,
        users = users.Select(u => new { u.Seed, u.Names, u.Stories, u.TestStories, u.TestPositions, u.PrivateShare }),
        teacher_forced = TeacherForcedRows().Select(r => new
        {
            r.Plugin,
            r.Mode,
            private_accuracy = Summary.Of(r.Figures.Select(f => f.PrivateAccuracy)),
            quality_share = Summary.Of(r.Figures.Select(f => f.QualityShare)),
            token_accuracy = Summary.Of(r.Figures.Select(f => f.TokenAccuracy)),
            m = Summary.Of(r.Figures.Select(f => f.M)),
            gate_recall = Summary.Of(r.Figures.Select(f => f.GateRecall ?? double.NaN)),
            gate_precision = Summary.Of(r.Figures.Select(f => f.GatePrecision ?? double.NaN)),
            needed_recall = Summary.Of(r.Figures.Select(f => f.NeededRecall ?? double.NaN)),
            diff_rate = Summary.Of(r.Figures.Select(f => f.DiffRate ?? double.NaN)),
            diff_pick_rate = Summary.Of(r.Figures.Select(f => f.DiffPickRate ?? double.NaN)),
            tau = Summary.Of(r.Figures.Select(f => f.Tau ?? double.NaN)),
            bytes_up_per_token = Summary.Of(r.Figures.Select(f => f.BytesUpPerToken)),
            bytes_down_per_token = Summary.Of(r.Figures.Select(f => f.BytesDownPerToken)),
            parameters_percent = Summary.Of(r.Figures.Select(f => f.ParametersPercent)),
        }),
        curves = CurveNames().Select(name => new
        {
            plugin = name,
            points = MGrid.Select(m => new { m, quality_share = Summary.Of(Read(name, m, p => p.QualityShare)), gate_recall = Summary.Of(Read(name, m, p => p.GateRecall)) }),
        }),
        free_running = FreeRunningRows().Select(r => new
        {
            r.Plugin,
            r.Mode,
            name_start_accuracy = Summary.Of(r.Results.Select(x => x.NameStartAccuracy)),
            whole_name_exact_match = Summary.Of(r.Results.Select(x => x.WholeNameExactMatch)),
            private_token_accuracy = Summary.Of(r.Results.Select(x => x.PrivateTokenAccuracy)),
            m = Summary.Of(r.Results.Select(x => x.M)),
            bytes_up_per_token = Summary.Of(r.Results.Select(x => x.BytesUpPerToken)),
            bytes_down_per_token = Summary.Of(r.Results.Select(x => x.BytesDownPerToken)),
            prompts = r.Results.Sum(x => x.Prompts),
            generated_tokens = r.Results.Sum(x => x.GeneratedTokens),
        }),
        sizes = SizeRows().Select(r => new
        {
            r.Stories,
            r.Plugin,
            training_stories = Summary.Of(r.Figures.Select(f => (double)f.TrainingStories)),
            private_accuracy = Summary.Of(r.Figures.Select(f => f.PrivateAccuracy)),
            quality_share = Summary.Of(r.Figures.Select(f => f.QualityShare)),
            m = Summary.Of(r.Figures.Select(f => f.M)),
            gate_recall = Summary.Of(r.Figures.Select(f => f.GateRecall ?? double.NaN)),
        }),
        per_user = users,
    };

    public string Markdown()
    {
        var text = new StringBuilder();
        text.AppendLine($"{users.Count} drawn users (seeds {string.Join(", ", users.Select(u => u.Seed))}); each: {settings.Stories} stories for training and validation " +
            $"(a corpus of {settings.CorpusSize}, whose test split is the test set), {settings.Epochs} epochs, tau set on the user's validation stories to " +
            $"{100 * settings.TargetQuality:0.#}% of parallel. Figures are means over users with 95% intervals.");
        text.AppendLine();
        text.AppendLine("Teacher-forced, on the test stories (private acc.: next-token accuracy where the target is part of a private name; share: of the parallel plugin's):");
        text.AppendLine();
        text.AppendLine("| plugin | mode | private acc. % | share of parallel % | token acc. % | M | gate recall | recall where needed | diff rate | diff pick rate | paper M | paper share of S1 |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var row in TeacherForcedRows())
        {
            var f = row.Figures;
            var paper = row.Plugin == row.Mode || row.Plugin == "-" ? Paper.GetValueOrDefault(row.Mode) : default;
            text.AppendLine($"| {row.Plugin} | {row.Mode} | {Of(f, x => x.PrivateAccuracy, "F1")} | {Of(f, x => 100 * x.QualityShare, "F1")} | {Of(f, x => x.TokenAccuracy, "F1")} | " +
                $"{Of(f, x => x.M, "F3")} | {Of(f, x => x.GateRecall, "F3")} | {Of(f, x => x.NeededRecall, "F3")} | {Of(f, x => x.DiffRate, "F3")} | {Of(f, x => x.DiffPickRate, "F3")} | " +
                $"{paper.M ?? "-"} | {paper.Share ?? "-"} |");
        }
        text.AppendLine();
        text.AppendLine("Each gated plugin's test curve read at fixed M (share of parallel %, gate recall):");
        text.AppendLine();
        text.AppendLine("| plugin | " + string.Join(" | ", MGrid.Select(m => $"M {m:0.##}")) + " |");
        text.AppendLine("|---|" + string.Concat(MGrid.Select(_ => "---|")));
        foreach (var name in CurveNames())
            text.AppendLine($"| {name} | " + string.Join(" | ", MGrid.Select(m =>
                $"{MeanInterval.Of(Read(name, m, p => 100 * p.QualityShare)).Format("F1")}; {MeanInterval.Of(Read(name, m, p => p.GateRecall)).Mean:F3}")) + " |");
        text.AppendLine();
        text.AppendLine($"Free-running: prompts cut just before a private name (up to {settings.Prompts} a user), {settings.Generate} tokens generated greedily; M and bytes counted from the calls that crossed the edge transport:");
        text.AppendLine();
        text.AppendLine("| plugin | mode | name-start acc. % | whole-name exact % | private-token acc. % | M | bytes up / token | bytes down / token |");
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var row in FreeRunningRows())
        {
            var r = row.Results;
            text.AppendLine($"| {row.Plugin} | {row.Mode} | {Format(r.Select(x => 100 * x.NameStartAccuracy), "F1")} | {Format(r.Select(x => 100 * x.WholeNameExactMatch), "F1")} | " +
                $"{Format(r.Select(x => 100 * x.PrivateTokenAccuracy), "F1")} | {Format(r.Select(x => x.M), "F3")} | {Format(r.Select(x => x.BytesUpPerToken), "F0")} | {Format(r.Select(x => x.BytesDownPerToken), "F0")} |");
        }
        if (settings.Sizes.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("Data size (stories per user, of which about 80% train and 10% validate), on the same test stories:");
            text.AppendLine();
            text.AppendLine("| stories | plugin | private acc. % | share of parallel % | M (share of tokens that use the device) | gate recall |");
            text.AppendLine("|---|---|---|---|---|---|");
            foreach (var row in SizeRows())
                text.AppendLine($"| {row.Stories} | {row.Plugin} | {Of(row.Figures, x => x.PrivateAccuracy, "F1")} | {Of(row.Figures, x => 100 * x.QualityShare, "F1")} | {Of(row.Figures, x => x.M, "F3")} | {Of(row.Figures, x => x.GateRecall, "F3")} |");
        }
        text.AppendLine();
        text.Append(Targets());
        return text.ToString();
    }

    /// <summary>The method's targets, each met or missed by the figure measured, for spa with each way of setting tau.</summary>
    public string Targets()
    {
        var free = FreeRunningRows().ToDictionary(r => r.Mode, r => MeanInterval.Of(r.Results.Select(x => 100 * x.NameStartAccuracy)));
        double gap = free.TryGetValue("parallel", out var p) && free.TryGetValue("spa", out var s) ? p.Mean - s.Mean : double.NaN;
        static string Verdict(bool met) => met ? "met" : "**missed**";
        var text = new StringBuilder($"Targets, over {users.Count} users:\n");
        foreach (var row in TeacherForcedRows().Where(r => r.Mode == "spa" && r.Plugin is "spa" || r.Plugin.StartsWith("spa@", StringComparison.Ordinal)))
        {
            var share = MeanInterval.Of(row.Figures.Select(f => 100 * f.QualityShare));
            var m = MeanInterval.Of(row.Figures.Select(f => f.M));
            var recall = MeanInterval.Of(row.Figures.Select(f => f.GateRecall ?? double.NaN));
            string how = row.Plugin == "spa" ? $"tau set to {100 * settings.TargetQuality:0.#}% of parallel" : $"tau set to M <= {settings.MBudget:0.##}";
            text.AppendLine($"- {row.Plugin} ({how} on each user's validation stories):");
            text.AppendLine($"  - >= 98% of parallel's private-token accuracy at M <= 0.25: {share.Format("F1")}% at M {m.Format("F3")}: {Verdict(share.Mean >= 98 && m.Mean <= 0.25)}");
            text.AppendLine($"  - lower end of the interval >= 97%: {share.Low:F1}%: {Verdict(share.Low >= 97)}");
            text.AppendLine($"  - gate recall >= 0.95: {recall.Format("F3")}: {Verdict(recall.Mean >= 0.95)}");
        }
        text.AppendLine($"- free-running name-start accuracy of spa within 2 points of parallel's: {gap:F1} points below: {Verdict(gap <= 2)}");
        return text.ToString();
    }

    /// <summary>
    /// The mean quality-versus-M curves of the gated plugins of the default size (a share of the same parallel plugin),
    /// with the 95% interval of each point as an error bar.
    /// </summary>
    public void Plot(string path)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var sameReference = StudyPlugin.All.Where(p => p.SideDim is null).Select(p => p.Name).ToHashSet();
        foreach (var (name, index) in CurveNames().Where(sameReference.Contains).Select((n, i) => (n, i)))
        {
            var points = MGrid.Select(m => MeanInterval.Of(Read(name, m, p => 100 * p.QualityShare))).ToArray();
            var line = plot.Add.Scatter(MGrid, points.Select(p => p.Mean).ToArray());
            line.Color = palette.GetColor(index);
            line.LegendText = name;
            var bars = plot.Add.ErrorBar(MGrid, points.Select(p => p.Mean).ToArray(), points.Select(p => p.Mean - p.Low).ToArray());
            bars.Color = line.Color;
        }
        plot.Title($"Private-token accuracy against round trips, mean of {users.Count} drawn users");
        plot.XLabel("M, round trips to the device per token");
        plot.YLabel("share of parallel's private-token accuracy (%)");
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        plot.SavePng(path, 900, 600);
    }

    private sealed record TeacherForcedRow(string Plugin, string Mode, IReadOnlyList<TeacherForcedFigures> Figures);

    private IEnumerable<TeacherForcedRow> TeacherForcedRows() =>
        users.SelectMany(u => u.TeacherForced).GroupBy(f => (f.Plugin, f.Mode)).Select(g => new TeacherForcedRow(g.Key.Plugin, g.Key.Mode, g.ToArray()));

    private sealed record FreeRunningRow(string Plugin, string Mode, IReadOnlyList<NameCompletionResult> Results);

    private IEnumerable<FreeRunningRow> FreeRunningRows() =>
        users.SelectMany(u => u.FreeRunning).GroupBy(f => (f.Plugin, f.Mode)).Select(g => new FreeRunningRow(g.Key.Plugin, g.Key.Mode, g.Select(f => f.Result).ToArray()));

    private sealed record SizeRow(int Stories, string Plugin, IReadOnlyList<SizeFigures> Figures);

    private IEnumerable<SizeRow> SizeRows() =>
        users.SelectMany(u => u.Sizes).GroupBy(f => (f.Stories, f.Plugin)).OrderBy(g => g.Key.Stories).Select(g => new SizeRow(g.Key.Stories, g.Key.Plugin, g.ToArray()));

    private IEnumerable<string> CurveNames() => users.SelectMany(u => u.Curves.Keys).Distinct();

    /// <summary>Each user's curve of <paramref name="name"/> read at <paramref name="m"/>, linearly between the two tau it falls between.</summary>
    private IEnumerable<double> Read(string name, double m, Func<CurvePoint, double> value) =>
        users.Where(u => u.Curves.ContainsKey(name)).Select(u =>
        {
            var points = u.Curves[name].OrderBy(p => p.M).ToArray();
            if (m <= points[0].M) return value(points[0]);
            if (m >= points[^1].M) return value(points[^1]);
            int above = Array.FindIndex(points, p => p.M >= m);
            var (a, b) = (points[above - 1], points[above]);
            double w = b.M == a.M ? 0 : (m - a.M) / (b.M - a.M);
            return value(a) + w * (value(b) - value(a));
        });

    private static string Of<T>(IEnumerable<T> figures, Func<T, double?> value, string format) => Format(figures.Select(f => value(f) ?? double.NaN), format);

    private static string Format(IEnumerable<double> values, string format) => MeanInterval.Of(values).Format(format);
}
