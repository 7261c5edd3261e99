using System.CommandLine;
using Spa.CommandLine;
using Spa.Model;
using Spa.Model.Evaluation;
using Spa.Model.Plugins;
using Spa.Model.Tokenizers;
using Spa.Model.Training;

namespace Spa.Cli.Commands;

/// <summary><c>spa train</c>: trains a personal plugin on a frozen base and writes it as plugin.json + plugin.safetensors.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var task = new TaskArguments();
        var kind = new Option<string>("--kind") { Description = "Plugin: ladder (SPA side network), lora, adapter.", DefaultValueFactory = _ => "ladder" };
        var mode = new Option<string>("--mode") { Description = "Mode the plugin is trained for: side, parallel, switch, spa (ladder); parallel (lora, adapter).", DefaultValueFactory = _ => "spa" };
        var output = new Option<string>("--out", "-o") { Description = "Directory for the plugin and its checkpoints.", Required = true };
        var epochs = new Option<int>("--epochs") { Description = "Passes over the training split.", DefaultValueFactory = _ => 3 };
        var lambda = new Option<double>("--lambda") { Description = "Price of one round trip in the joint gate objective (nats).", DefaultValueFactory = _ => 0.05 };
        var objective = new Option<string>("--gate-objective") { Description = "two-stage (parallel first, then the gate) or joint (gate and side network together).", DefaultValueFactory = _ => PluginNames.Name(GateSettings.Default.Objective) };
        var delta = new Option<double>("--delta") { Description = "Two-stage label threshold on log P_parallel(y) - log P_base(y).", DefaultValueFactory = _ => 1.0 };
        var gateInput = new Option<string>("--gate-input") { Description = "What the gate reads: hidden (n, the paper's) or hidden-and-token (n and the current token's embedding).", DefaultValueFactory = _ => PluginNames.Name(GateSettings.Default.Input) };
        var gateLabel = new Option<string>("--gate-label") { Description = "Two-stage labels per token, or per word (a word needs the edge when any of its tokens does).", DefaultValueFactory = _ => PluginNames.Name(GateSettings.Default.Label) };
        var tau = new Option<double?>("--tau") { Description = "A fixed gate threshold to store with the plugin, instead of one set on held-out data." };
        var targetQuality = new Option<double?>("--target-quality") { Description = $"Set tau on the held-out (validation) part of the data: the largest tau keeping this share of parallel's quality (default {DefaultTargetQuality})." };
        var mBudget = new Option<double?>("--m-budget") { Description = "Set tau on the held-out part of the data: the smallest tau keeping round trips per token at or under this budget." };
        var seed = new Option<int>("--seed") { Description = "Seed for initialisation and shuffling.", DefaultValueFactory = _ => 0 };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per step.", DefaultValueFactory = _ => 8 };
        var learningRate = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warm-up then cosine).", DefaultValueFactory = _ => 3e-3 };
        var maxLength = new Option<int>("--max-length") { Description = "Longest training sequence in tokens.", DefaultValueFactory = _ => 256 };
        var limit = new Option<int?>("--limit") { Description = "Use at most this many training examples." };
        var sideDim = new Option<int?>("--side-dim") { Description = "Ladder width d_s (default 32, at most d/2)." };
        var adapterDim = new Option<int?>("--adapter-dim") { Description = "Width of the ladder's per-layer adapters (default d)." };
        var rank = new Option<int?>("--lora-rank") { Description = "LoRA rank (default: the ladder's parameter count)." };
        var bottleneck = new Option<int?>("--adapter-bottleneck") { Description = "Adapter bottleneck (default: the ladder's parameter count)." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in --out." };
        var force = new Option<bool>("--force") { Description = "Replace a plugin already in --out." };

        var command = new Command("train", "Train a personal plugin for a frozen base model.");
        model.AddTo(command);
        task.AddTo(command);
        foreach (var option in new Option[] { kind, mode, output, epochs, lambda, objective, delta, gateInput, gateLabel, tau, targetQuality, mBudget, seed, batchSize, learningRate, maxLength, limit, sideDim, adapterDim, rank, bottleneck, resume, force })
            command.Options.Add(option);
        command.SetGuardedAction((result, cancellation) =>
        {
            var pluginKind = PluginNames.ParseKind(result.GetValue(kind)!);
            var pluginMode = PluginNames.ParseMode(result.GetValue(mode)!);
            if (pluginMode == CombinationMode.Base) throw new UsageException("mode 'base' has no plugin to train");
            PersonalPlugin.CheckModeFits(pluginKind, pluginMode);
            var threshold = TauChoice.From(result.GetValue(tau), result.GetValue(targetQuality), result.GetValue(mBudget), DefaultTargetQuality);
            var options = new TrainingOptions
            {
                Epochs = result.GetValue(epochs),
                BatchSize = result.GetValue(batchSize),
                LearningRate = result.GetValue(learningRate),
                Seed = result.GetValue(seed),
                MaxSequenceLength = result.GetValue(maxLength),
                GateObjective = PluginNames.ParseGateObjective(result.GetValue(objective)!),
                Lambda = result.GetValue(lambda),
                Delta = result.GetValue(delta),
                GateLabel = PluginNames.ParseGateLabel(result.GetValue(gateLabel)!),
            };
            options.Validate();
            var input = PluginNames.ParseGateInput(result.GetValue(gateInput)!);
            var directory = result.GetValue(output)!;
            bool resuming = result.GetValue(resume);
            if (!resuming && !result.GetValue(force) && File.Exists(Path.Combine(directory, PluginManifest.FileName)))
                throw new UsageException($"{directory} already holds a plugin: pass --resume to continue training it or --force to replace it");

            using var llama = model.LoadModel(result);
            var tokenizer = model.LoadTokenizer(result, llama);
            options = options with { WordStarts = WordStarts.Of(tokenizer) };
            var (train, validation) = task.TrainingData(result, tokenizer, llama, result.GetValue(limit), options.MaxSequenceLength);
            var dimensions = PluginDimensions.For(llama.Config, result.GetValue(sideDim), result.GetValue(rank), result.GetValue(bottleneck), result.GetValue(adapterDim));
            var gate = new GateSettings(options.GateObjective, options.Lambda, threshold.Fixed ?? GateSettings.Default.Tau, options.Delta) { Input = input, Label = options.GateLabel };
            using var plugin = PersonalPlugin.Create(llama, pluginKind, pluginMode, dimensions, gate, options.Seed);
            Console.Error.WriteLine($"training a {PluginNames.Name(pluginKind)} plugin ({plugin.DeviceParameterCount:N0} parameters on the device, " +
                $"{100.0 * plugin.DeviceParameterCount / llama.ParameterCount:F1}% of the base) for mode {PluginNames.Name(pluginMode)} on " +
                $"{train.Count} training and {validation.Count} validation sequences");

            var report = TrainAndSave(llama, plugin, options, threshold, task.Name(result), train, validation, directory, resuming, "", cancellation);
            if (report.Steps == 0)
                // --resume of a run that had already finished: the checkpoint in --out is the plugin; keep it and its record.
                Console.Error.WriteLine($"nothing left to train: {directory} already holds the plugin trained for {options.Epochs} epochs (pass more --epochs to continue)");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>
    /// The share of parallel's quality that sets tau unless told otherwise, chosen on drawn users other than those the
    /// results are reported on (docs/method.md).
    /// </summary>
    public const double DefaultTargetQuality = 0.995;

    /// <summary>
    /// What <c>spa train</c> does once the plugin and its data are ready: trains (with a progress line after
    /// <paramref name="label"/>), records the training, sets a gated plugin's tau as <paramref name="threshold"/> says and
    /// saves the plugin. A run with nothing left to train (a finished run resumed) returns a report of no steps and
    /// leaves the saved plugin as it is.
    /// </summary>
    public static TrainingReport TrainAndSave(LlamaModel llama, PersonalPlugin plugin, TrainingOptions options, TauChoice threshold, string task,
        IReadOnlyList<TrainingSequence> train, IReadOnlyList<TrainingSequence> validation, string directory, bool resume, string label, CancellationToken cancellation)
    {
        var report = Run(llama, plugin, options, train, validation, directory, resume, label, cancellation);
        if (report.Steps == 0) return report;
        double lastValidation = report.ValidationLosses.LastOrDefault(double.NaN);
        plugin.Training = new TrainingRecord(task, options.Epochs, report.Steps, report.Tokens, report.FinalLoss,
            double.IsFinite(lastValidation) ? lastValidation : null, options.Seed);
        if (plugin.Gate is not null && threshold.Fixed is null) Calibrate(llama, plugin, validation, threshold, options.MaxSequenceLength, label);
        plugin.Save(directory);
        Console.Error.WriteLine($"{label}trained in {ProgressLine.Duration(report.Elapsed)}: {report.Steps} steps, {report.Tokens:N0} target tokens, " +
            $"loss {report.FirstLoss:F3} -> {report.FinalLoss:F3}, validation {string.Join(" ", report.ValidationLosses.Select(v => v.ToString("F3")))}; plugin written to {directory}");
        return report;
    }

    /// <summary>Sets the gated plugin's tau on the held-out sequences to the target, and says what it gave there.</summary>
    private static void Calibrate(LlamaModel llama, PersonalPlugin plugin, IReadOnlyList<TrainingSequence> heldOut, TauChoice threshold, int maxLength, string label)
    {
        if (heldOut.Count == 0)
        {
            Console.Error.WriteLine($"{label}no held-out (validation) data to set tau on: the gate keeps tau {plugin.GateSettings!.Tau}");
            return;
        }
        var measured = TeacherForcedPositions.Measure(llama, plugin, PersonalEvaluator.AlwaysAsking(plugin.Mode), heldOut, maxLength);
        var (value, calibration) = threshold.Budget is { } budget ? TauCalibrator.ForBudget(measured, budget) : TauCalibrator.ForQuality(measured, threshold.Quality!.Value);
        plugin.GateSettings = plugin.GateSettings! with { Tau = value, Calibration = calibration };
        string reference = plugin.Mode == CombinationMode.Spa ? "parallel" : "side";
        Console.Error.WriteLine($"{label}tau {value:0.####} set on {measured.Count:N0} held-out positions ({calibration.Positions:N0} scored): " +
            $"{100 * calibration.Quality:F1}% of {reference}'s accuracy at M {calibration.M:F3} (target: {(threshold.Budget is null ? $"{100 * threshold.Quality:0.#}% of {reference}" : $"M <= {threshold.Budget}")})");
    }

    /// <summary>Trains <paramref name="plugin"/> with a progress line (after <paramref name="label"/>) that shows the epoch, step, loss, speed and time left.</summary>
    private static TrainingReport Run(LlamaModel llama, PersonalPlugin plugin, TrainingOptions options, IReadOnlyList<TrainingSequence> train,
        IReadOnlyList<TrainingSequence> validation, string directory, bool resume, string label, CancellationToken cancellation)
    {
        using var line = new ProgressLine();
        var progress = new SynchronousProgress<TrainingProgress>(p => line.Update(
            $"{label}epoch {p.Epoch}/{p.Epochs} {ProgressLine.Bar((double)p.Step / p.TotalSteps)} step {p.Step}/{p.TotalSteps} " +
            $"loss {p.Loss:F3} {p.TokensPerSecond:F0} tok/s ETA {ProgressLine.Duration(p.Remaining)}"));
        return new PluginTrainer(llama, plugin, options).Train(train, validation, directory, resume, progress, cancellation);
    }
}

/// <summary>How a gated plugin's tau is chosen: fixed, or set on held-out data to a share of quality or a round-trip budget.</summary>
public sealed record TauChoice(double? Fixed, double? Quality, double? Budget)
{
    public static TauChoice From(double? tau, double? quality, double? budget, double defaultQuality)
    {
        if (new[] { tau, quality, budget }.Count(v => v is not null) > 1) throw new UsageException("give one of --tau, --target-quality and --m-budget");
        if (tau is { } t && !(t is >= 0 and <= 1)) throw new UsageException($"--tau must be in [0, 1], got {t}");
        if (quality is { } q && !(q is > 0 and <= 1)) throw new UsageException($"--target-quality is a share of parallel's quality in (0, 1], got {q}");
        if (budget is { } b && !(b is >= 0 and <= 1)) throw new UsageException($"--m-budget must be in [0, 1], got {b}");
        return tau is not null || budget is not null ? new TauChoice(tau, quality, budget) : new TauChoice(null, quality ?? defaultQuality, null);
    }
}
