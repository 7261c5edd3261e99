using Spa.CommandLine;
using Spa.Model.Checkpoints;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Spa.Model;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa bench train</c>: training throughput and peak memory of a ladder plugin, LoRA and full back-propagation
/// through the base, on the same data and base. Each kind runs in its own process, so that its peak resident
/// memory (VmHWM) is its own.
/// </summary>
public static class BenchTrainCommand
{
    public const string Full = "full";

    public static Command Create()
    {
        var model = new ModelArguments();
        var kinds = new Option<string>("--kinds") { Description = "Comma-separated: ladder, lora, adapter, full (every base weight trained).", DefaultValueFactory = _ => "ladder,lora,full" };
        var steps = new Option<int>("--steps") { Description = "Measured optimiser steps (after 3 warm-up steps).", DefaultValueFactory = _ => 30 };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per step.", DefaultValueFactory = _ => 8 };
        var task = new Option<string>("--task") { Description = "Training data: a task of ../shared/data/tasks.", DefaultValueFactory = _ => "xsum" };
        var maxLength = new Option<int>("--max-length") { Description = "Sequence length in tokens.", DefaultValueFactory = _ => 256 };
        var json = new Option<string?>("--json") { Description = "Write the figures to this JSON file." };
        var child = new Option<bool>("--in-process") { Description = "Measure one kind in this process (used by the parent run).", Hidden = true };

        var command = new Command("train", "Training throughput and peak memory: ladder against LoRA against full back-propagation.");
        model.AddTo(command);
        foreach (var option in new Option[] { kinds, steps, batchSize, task, maxLength, json, child })
            command.Options.Add(option);
        command.SetGuardedAction((result, cancellation) =>
        {
            var requested = result.GetValue(kinds)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(k => k.ToLowerInvariant()).ToArray();
            foreach (var k in requested.Where(k => k != Full)) PluginNames.ParseKind(k);
            int stepCount = result.GetValue(steps), batch = result.GetValue(batchSize), length = result.GetValue(maxLength);
            if (stepCount <= 0 || batch <= 0 || length < 8) throw new UsageException("--steps and --batch-size must be positive and --max-length at least 8");

            if (result.GetValue(child))
            {
                if (requested.Length != 1) throw new UsageException("--in-process measures exactly one kind");
                var figure = Measure(model, result, requested[0], stepCount, batch, length, result.GetValue(task)!, cancellation);
                Console.Out.WriteLine(JsonSerializer.Serialize(figure, new JsonSerializerOptions(PluginManifest.Json) { WriteIndented = false }));
                return Task.FromResult(0);
            }

            var figures = requested.Select(kind => BenchProcess.Run<TrainFigure>(
                BenchProcess.Arguments(result, ["bench", "train", "--in-process", "--kinds", kind], "--kinds", "--in-process", "--json"),
                kind, PluginManifest.Json, cancellation)).ToList();
            var baseline = figures.FirstOrDefault(f => f.Kind == PluginNames.Name(PluginKind.Ladder)) ?? figures[0];
            foreach (var f in figures)
                Console.Error.WriteLine($"{f.Kind,-8} {f.TokensPerS,10:F0} tokens/s  peak {f.PeakRssMb,7:F0} MB (model loaded: {f.LoadedRssMb:F0} MB)  " +
                    $"trainable {f.TrainableParameters:N0}  speed vs {baseline.Kind}: {f.TokensPerS / baseline.TokensPerS:F2}x");
            var text = JsonSerializer.Serialize(new { figures, steps = stepCount, batch_size = batch, max_length = length, task = result.GetValue(task) }, PluginManifest.Json);
            if (result.GetValue(json) is { } path) File.WriteAllText(path, text + Environment.NewLine);
            else Console.Out.WriteLine(text);
            return Task.FromResult(0);
        });
        return command;
    }

    public sealed record TrainFigure(string Kind, double TokensPerS, double PeakRssMb, double LoadedRssMb, long TrainableParameters, double FirstLoss, double LastLoss);

    private static TrainFigure Measure(ModelArguments modelArguments, ParseResult result, string kind, int steps, int batchSize, int length, string taskName, CancellationToken cancellation)
    {
        using var model = modelArguments.LoadModel(result);
        var tokenizer = modelArguments.LoadTokenizer(result, model);
        double loadedRss = ResidentMegabytes("VmRSS");
        var examples = TaskCatalog.Load(taskName, null, ModelLocator.FindSharedData("tasks")).Split(TaskSplit.Train);
        var sequences = examples.Take((steps + 3) * batchSize).Select(e =>
        {
            var (prompt, target) = TokenizedExample.Tokenize(tokenizer, e, length, Math.Min(48, length / 2));
            return new TrainingSequence([.. prompt, .. target], 1); // every position counts: the same work for every kind
        }).ToArray();
        if (sequences.Length < (steps + 3) * batchSize) throw new UsageException($"task {taskName} has too few training examples for {steps} steps of {batchSize}");

        var losses = new List<double>();
        long tokens = 0;
        var clock = new Stopwatch();
        if (kind == Full)
        {
            // Every base weight trains, with Adam's two moment buffers per weight (as AdamW keeps for a plugin). The update is
            // written out because TorchSharp's optimisers take Parameters, and wrapping the model's tensors would take them over.
            var weights = model.Weights;
            foreach (var w in weights) w.requires_grad_(true);
            var moments = weights.Select(w => (First: zeros_like(w).DetachFromDisposeScope(), Second: zeros_like(w).DetachFromDisposeScope())).ToArray();
            using var beta1 = 0.9.ToScalar();
            using var oneMinusBeta1 = 0.1.ToScalar();
            using var beta2 = 0.999.ToScalar();
            using var oneMinusBeta2 = 0.001.ToScalar();
            using var epsilon = 1e-8.ToScalar();
            using var step = (-1e-4).ToScalar();
            for (int s = 0; s < steps + 3; s++)
            {
                cancellation.ThrowIfCancellationRequested();
                if (s == 3) clock.Start();
                var batch = sequences.Skip(s * batchSize).Take(batchSize).ToArray();
                losses.Add(NoCollection.Run(() =>
                {
                    using var scope = NewDisposeScope();
                    var (input, targets, mask, _) = Batch(model, batch);
                    var logits = model.Logits(model.Hidden(input, batch.Select(x => x.Tokens.Length).ToArray()));
                    var loss = -(logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask).sum() / mask.sum();
                    loss.backward();
                    using (no_grad())
                        for (int i = 0; i < weights.Count; i++)
                        {
                            var gradient = weights[i].grad!;
                            moments[i].First.mul_(beta1).add_(gradient, oneMinusBeta1);
                            moments[i].Second.mul_(beta2).addcmul_(gradient, gradient, oneMinusBeta2);
                            weights[i].addcdiv_(moments[i].First, moments[i].Second.sqrt().add_(epsilon), step);
                            gradient.zero_();
                        }
                    return (double)loss.item<float>();
                }));
                if (s >= 3) tokens += batch.Sum(x => x.Tokens.Length);
            }
            clock.Stop();
            return new TrainFigure(kind, tokens / clock.Elapsed.TotalSeconds, ResidentMegabytes("VmHWM"), loadedRss, weights.Sum(w => w.NumberOfElements), losses[0], losses[^1]);
        }

        using var plugin = PersonalPlugin.Create(model, PluginNames.ParseKind(kind), CombinationMode.Parallel, PluginDimensions.For(model.Config));
        var trainer = new PluginTrainer(model, plugin, new TrainingOptions { Epochs = 1, BatchSize = batchSize, MaxSequenceLength = length });
        trainer.Train(sequences[..(3 * batchSize)], [], cancellation: cancellation);
        clock.Start();
        var report = trainer.Train(sequences[(3 * batchSize)..], [], cancellation: cancellation);
        clock.Stop();
        tokens = sequences[(3 * batchSize)..].Sum(s => (long)s.Tokens.Length);
        return new TrainFigure(kind, tokens / clock.Elapsed.TotalSeconds, ResidentMegabytes("VmHWM"), loadedRss, plugin.DeviceParameterCount, report.FirstLoss, report.FinalLoss);
    }

    private static (Tensor Input, Tensor Targets, Tensor Mask, long Counted) Batch(LlamaModel model, IReadOnlyList<TrainingSequence> batch)
    {
        int length = batch.Max(s => s.Tokens.Length);
        var targets = new long[batch.Count * length];
        var mask = new float[batch.Count * length];
        long counted = 0;
        for (int b = 0; b < batch.Count; b++)
            for (int t = 0; t + 1 < batch[b].Tokens.Length; t++)
            {
                targets[b * length + t] = batch[b].Tokens[t + 1];
                mask[b * length + t] = 1;
                counted++;
            }
        return (model.PadTokens(batch.Select(s => s.Tokens).ToArray(), length), tensor(targets, [batch.Count, length]), tensor(mask, [batch.Count, length]), counted);
    }

    private static double ResidentMegabytes(string field) => ProcessStatus.Bytes(field) / 1024.0 / 1024.0;
}
