using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spa.CommandLine;
using Spa.Model.Evaluation;
using Spa.Model.Plugins;

namespace Spa.Cli.Commands;

/// <summary><c>spa eval</c>: scores the base and each plugin in each mode on a task; prints a table, writes JSON rows.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var task = new TaskArguments();
        var plugins = new Option<string[]>("--plugin") { Description = "A trained plugin directory (repeatable).", AllowMultipleArgumentsPerToken = false };
        var modes = new Option<string>("--modes") { Description = "Comma-separated modes: base, side, parallel, switch, spa, and spa@m<=B for a round-trip budget B.", DefaultValueFactory = _ => "base,parallel,spa" };
        var tau = new Option<double?>("--tau") { Description = "Gate threshold for switch and spa (default: the plugin's own)." };
        var beams = new Option<int>("--beams") { Description = "Beam width for generation tasks (1: greedy).", DefaultValueFactory = _ => 4 };
        var limit = new Option<int>("--limit") { Description = "Evaluate at most this many test examples.", DefaultValueFactory = _ => 50 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Most tokens generated per answer.", DefaultValueFactory = _ => 48 };
        var placement = new Option<string>("--placement") { Description = "Where the tap projections run: edge or cloud.", DefaultValueFactory = _ => "edge" };
        var activation = new Option<string>("--activation") { Description = "How activations travel: fp32, fp16 or int8.", DefaultValueFactory = _ => "fp32" };
        var json = new Option<string?>("--json") { Description = "Write the rows to this JSON file." };

        var command = new Command("eval", "Evaluate the base and plugins in combination modes on a task.");
        model.AddTo(command);
        task.AddTo(command);
        foreach (var option in new Option[] { task.FreeRunning, plugins, modes, tau, beams, limit, maxNew, placement, activation, json })
            command.Options.Add(option);
        command.SetGuardedAction((result, cancellation) =>
        {
            var requested = ParseModes(result.GetValue(modes)!);
            int count = result.GetValue(limit);
            if (count <= 0) throw new UsageException($"--limit must be positive, got {count}");
            var baseSettings = new EvaluationSettings
            {
                Beams = result.GetValue(beams),
                MaxNewTokens = result.GetValue(maxNew),
                Placement = PluginNames.ParsePlacement(result.GetValue(placement)!),
                Activation = PluginNames.ParseActivation(result.GetValue(activation)!),
                Tau = result.GetValue(tau),
            };
            if (baseSettings.Beams < 1) throw new UsageException("--beams must be >= 1");
            using var llama = model.LoadModel(result);
            var tokenizer = model.LoadTokenizer(result, llama);
            var loaded = (result.GetValue(plugins) ?? []).Select(dir => (Directory: dir, Plugin: PersonalPlugin.Load(dir, llama))).ToList();
            try
            {
                var rows = new List<EvaluationRow>();
                var evaluate = task.TestEvaluator(result, llama, tokenizer, count, cancellation);

                foreach (var (mode, budget) in requested)
                {
                    var settings = baseSettings with { MBudget = budget };
                    if (mode == CombinationMode.Base)
                    {
                        rows.Add(evaluate(null, mode, settings));
                        continue;
                    }
                    if (loaded.Count == 0) throw new UsageException($"mode '{PluginNames.Name(mode)}' needs at least one --plugin");
                    foreach (var (directory, plugin) in loaded)
                    {
                        string? skip = Unsupported(plugin, mode);
                        if (skip is not null)
                        {
                            Console.Error.WriteLine($"skipping {directory} in mode {PluginNames.Name(mode)}: {skip}");
                            continue;
                        }
                        rows.Add(evaluate(plugin, mode, settings) with { Plugin = Path.GetFileName(Path.TrimEndingDirectorySeparator(directory)) });
                    }
                }

                Console.Out.Write(Table(rows));
                var path = result.GetValue(json);
                if (path is not null)
                    File.WriteAllText(path, JsonSerializer.Serialize(new { rows }, RowJson) + Environment.NewLine);
            }
            finally
            {
                foreach (var (_, plugin) in loaded) plugin.Dispose();
            }
            return Task.FromResult(0);
        });
        return command;
    }

    // Every field is written, null where it does not apply or has nothing to count (a gate's precision when it sent
    // nothing), so that consumers see one shape for all rows.
    private static readonly JsonSerializerOptions RowJson = new(PluginManifest.Json)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.Never,
        Converters = { new FiniteOrNull() },
    };

    private sealed class FiniteOrNull : System.Text.Json.Serialization.JsonConverter<double?>
    {
        public override bool HandleNull => true;

        public override double? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.Null ? null : reader.GetDouble();

        public override void Write(Utf8JsonWriter writer, double? value, JsonSerializerOptions options)
        {
            if (value is { } x && double.IsFinite(x)) writer.WriteNumberValue(x);
            else writer.WriteNullValue();
        }
    }

    /// <summary>"base,spa,spa@m&lt;=0.2" into modes with optional round-trip budgets.</summary>
    public static IReadOnlyList<(CombinationMode Mode, double? Budget)> ParseModes(string text)
    {
        var modes = new List<(CombinationMode, double?)>();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var at = item.IndexOf("@m<=", StringComparison.OrdinalIgnoreCase);
            if (at < 0)
            {
                modes.Add((PluginNames.ParseMode(item), null));
                continue;
            }
            var mode = PluginNames.ParseMode(item[..at]);
            if (mode is not (CombinationMode.Spa or CombinationMode.Switch)) throw new UsageException($"a round-trip budget applies to spa and switch, not '{item}'");
            if (!double.TryParse(item[(at + 4)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var budget) || budget is < 0 or > 1)
                throw new UsageException($"'{item}': the budget after @m<= must be a number in [0, 1]");
            modes.Add((mode, budget));
        }
        if (modes.Count == 0) throw new UsageException("--modes names no mode");
        return modes;
    }

    private static string? Unsupported(PersonalPlugin plugin, CombinationMode mode)
    {
        if (plugin.Hook is not null && mode != CombinationMode.Parallel) return $"{PluginNames.Name(plugin.Kind)} plugins run only in parallel";
        if (mode is CombinationMode.Switch or CombinationMode.Spa && plugin.Gate is null) return "the plugin has no gate";
        return null;
    }

    /// <summary>The rows as a Markdown table in the paper's layout.</summary>
    public static string Table(IReadOnlyList<EvaluationRow> rows)
    {
        static string F(double? v, string format = "F2") => v is { } x && double.IsFinite(x) ? x.ToString(format, CultureInfo.InvariantCulture) : "-";
        var lines = new List<string>
        {
            "| task | mode | plugin | params % | score | ROUGE-1 | ROUGE-2 | ROUGE-L | private acc. | token acc. | gate recall | gate precision | M | bytes up/token | bytes down/token | name start | whole name |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        };
        lines.AddRange(rows.Select(r =>
            $"| {r.Task} | {r.Mode} | {(r.Kind is null ? "-" : r.Plugin is null ? r.Kind : $"{r.Kind} ({r.Plugin})")} | {F(r.ParametersPercent, "F1")} | {F(r.Score)} | {F(r.Rouge1)} | {F(r.Rouge2)} | {F(r.RougeL)} | " +
            $"{F(r.PrivateTokenAccuracy)} | {F(r.TokenAccuracy)} | {F(r.GateRecall, "F3")} | {F(r.GatePrecision, "F3")} | {F(r.M, "F3")} | {F(r.BytesUpPerToken, "F0")} | {F(r.BytesDownPerToken, "F0")} | " +
            $"{F(r.NameStartAccuracy)} | {F(r.WholeNameExactMatch)} |"));
        return string.Join(Environment.NewLine, lines) + Environment.NewLine;
    }
}
