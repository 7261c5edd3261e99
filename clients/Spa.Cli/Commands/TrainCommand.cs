using System.CommandLine;
using Spa.Model;
using Spa.Model.Plugins;
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
        var objective = new Option<string>("--gate-objective") { Description = "two-stage (parallel first, then the gate) or joint (gate and side network together).", DefaultValueFactory = _ => "two-stage" };
        var delta = new Option<double>("--delta") { Description = "Two-stage label threshold on log P_parallel(y) - log P_base(y).", DefaultValueFactory = _ => 1.0 };
        var tau = new Option<double>("--tau") { Description = "The gate threshold stored with the plugin.", DefaultValueFactory = _ => 0.2 };
        var seed = new Option<int>("--seed") { Description = "Seed for initialisation and shuffling.", DefaultValueFactory = _ => 0 };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per step.", DefaultValueFactory = _ => 8 };
        var learningRate = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warm-up then cosine).", DefaultValueFactory = _ => 3e-3 };
        var maxLength = new Option<int>("--max-length") { Description = "Longest training sequence in tokens.", DefaultValueFactory = _ => 256 };
        var limit = new Option<int?>("--limit") { Description = "Use at most this many training examples." };
        var sideDim = new Option<int?>("--side-dim") { Description = "Ladder width d_s (default 32, at most d/2)." };
        var rank = new Option<int?>("--lora-rank") { Description = "LoRA rank (default: the ladder's parameter count)." };
        var bottleneck = new Option<int?>("--adapter-bottleneck") { Description = "Adapter bottleneck (default: the ladder's parameter count)." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in --out." };
        var force = new Option<bool>("--force") { Description = "Replace a plugin already in --out." };

        var command = new Command("train", "Train a personal plugin for a frozen base model.");
        model.AddTo(command);
        task.AddTo(command);
        foreach (var option in new Option[] { kind, mode, output, epochs, lambda, objective, delta, tau, seed, batchSize, learningRate, maxLength, limit, sideDim, rank, bottleneck, resume, force })
            command.Options.Add(option);
        command.SetGuardedAction((result, cancellation) =>
        {
            var pluginKind = PluginNames.ParseKind(result.GetValue(kind)!);
            var pluginMode = PluginNames.ParseMode(result.GetValue(mode)!);
            if (pluginMode == CombinationMode.Base) throw new UsageException("mode 'base' has no plugin to train");
            PersonalPlugin.CheckModeFits(pluginKind, pluginMode);
            var options = new TrainingOptions
            {
                Epochs = result.GetValue(epochs),
                BatchSize = result.GetValue(batchSize),
                LearningRate = result.GetValue(learningRate),
                Seed = result.GetValue(seed),
                MaxSequenceLength = result.GetValue(maxLength),
                GateObjective = result.GetValue(objective)!,
                Lambda = result.GetValue(lambda),
                Delta = result.GetValue(delta),
            };
            options.Validate();
            var directory = result.GetValue(output)!;
            bool resuming = result.GetValue(resume);
            if (!resuming && !result.GetValue(force) && File.Exists(Path.Combine(directory, PluginManifest.FileName)))
                throw new UsageException($"{directory} already holds a plugin: pass --resume to continue training it or --force to replace it");

            using var llama = model.LoadModel(result);
            var tokenizer = model.LoadTokenizer(result, llama);
            var (train, validation) = task.TrainingData(result, tokenizer, llama, result.GetValue(limit), options.MaxSequenceLength);
            var dimensions = PluginDimensions.For(llama.Config, result.GetValue(sideDim), result.GetValue(rank), result.GetValue(bottleneck));
            var gate = new GateSettings(options.GateObjective, options.Lambda, result.GetValue(tau), options.Delta);
            using var plugin = PersonalPlugin.Create(llama, pluginKind, pluginMode, dimensions, gate, options.Seed);
            Console.Error.WriteLine($"training a {PluginNames.Name(pluginKind)} plugin ({plugin.DeviceParameterCount:N0} parameters on the device, " +
                $"{100.0 * plugin.DeviceParameterCount / llama.ParameterCount:F1}% of the base) for mode {PluginNames.Name(pluginMode)} on " +
                $"{train.Count} training and {validation.Count} validation sequences");

            var report = Run(llama, plugin, options, train, validation, directory, resuming, "", cancellation);
            if (report.Steps == 0)
            {
                // --resume of a run that had already finished: the checkpoint in --out is the plugin; keep it and its record.
                Console.Error.WriteLine($"nothing left to train: {directory} already holds the plugin trained for {options.Epochs} epochs (pass more --epochs to continue)");
                return Task.FromResult(0);
            }
            double lastValidation = report.ValidationLosses.LastOrDefault(double.NaN);
            plugin.Training = new TrainingRecord(task.Name(result), options.Epochs, report.Steps, report.Tokens, report.FinalLoss,
                double.IsFinite(lastValidation) ? lastValidation : null, options.Seed);
            plugin.Save(directory);
            Console.Error.WriteLine($"trained in {ProgressLine.Duration(report.Elapsed)}: {report.Steps} steps, {report.Tokens:N0} target tokens, " +
                $"loss {report.FirstLoss:F3} -> {report.FinalLoss:F3}, validation {string.Join(" ", report.ValidationLosses.Select(v => v.ToString("F3")))}; plugin written to {directory}");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>Trains <paramref name="plugin"/> with a progress line (after <paramref name="label"/>) that shows the epoch, step, loss, speed and time left.</summary>
    public static TrainingReport Run(LlamaModel llama, PersonalPlugin plugin, TrainingOptions options, IReadOnlyList<TrainingSequence> train,
        IReadOnlyList<TrainingSequence> validation, string directory, bool resume, string label, CancellationToken cancellation)
    {
        using var line = new ProgressLine();
        var progress = new SynchronousProgress<TrainingProgress>(p => line.Update(
            $"{label}epoch {p.Epoch}/{p.Epochs} {ProgressLine.Bar((double)p.Step / p.TotalSteps)} step {p.Step}/{p.TotalSteps} " +
            $"loss {p.Loss:F3} {p.TokensPerSecond:F0} tok/s ETA {ProgressLine.Duration(p.Remaining)}"));
        return new PluginTrainer(llama, plugin, options).Train(train, validation, directory, resume, progress, cancellation);
    }
}
