using System.Diagnostics;
using System.Text.Json;
using Spa.Model.Plugins;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Training;

/// <summary>
/// Trains a personal plugin on a frozen base: AdamW, linear warm-up then cosine decay, gradient clipping, padded
/// batches with a loss mask over target tokens, a validation pass and a checkpoint after every epoch. A run that
/// stops can resume from its last checkpoint; a NaN or infinite loss stops training and keeps that checkpoint.
/// For switch and spa the gate trains with the side network (joint objective) or after it (two-stage).
/// </summary>
public sealed class PluginTrainer(LlamaModel model, PersonalPlugin plugin, TrainingOptions options)
{
    private const string StateFile = "trainer-state.json";
    private const string OptimizerFile = "optimizer.bin";

    public TrainingReport Train(IReadOnlyList<TrainingSequence> train, IReadOnlyList<TrainingSequence> validation,
        string? checkpointDirectory = null, bool resume = false, IProgress<TrainingProgress>? progress = null, CancellationToken cancellation = default)
    {
        options.Validate();
        if (train.Count == 0) throw new ArgumentException("there is no training data");
        if (plugin.Gate is not null && options.GateObjective == GateObjective.TwoStage && options.GateLabel == GateLabel.Word && options.WordStarts is null)
            throw new ArgumentException("word labels for the gate need the tokenizer's word starts (TrainingOptions.WordStarts)");
        var stages = Stages().ToList();
        var clock = Stopwatch.StartNew();
        var state = resume && checkpointDirectory is not null ? LoadState(checkpointDirectory) : null;
        var validationLosses = new List<double>();
        double firstLoss = double.NaN, lastLoss = double.NaN;
        long tokens = 0;
        int totalSteps = 0;

        for (int stage = 0; stage < stages.Count; stage++)
        {
            if (state is not null && stage < state.Stage) continue;
            var (mode, kind, parameters) = stages[stage];
            foreach (var (_, p) in plugin.NamedParameters()) p.requires_grad = false;
            foreach (var p in parameters) p.requires_grad = true;

            int stepsPerEpoch = (train.Count + options.BatchSize - 1) / options.BatchSize;
            int stageSteps = stepsPerEpoch * options.Epochs;
            using var optimizer = optim.AdamW(parameters, options.LearningRate, weight_decay: options.WeightDecay);
            int firstEpoch = 0;
            if (state is not null && stage == state.Stage)
            {
                firstEpoch = state.EpochsDone;
                optimizer.load_state_dict(Path.Combine(checkpointDirectory!, OptimizerFile));
            }

            for (int epoch = firstEpoch; epoch < options.Epochs; epoch++)
            {
                plugin.SetTraining(true);
                var order = Enumerable.Range(0, train.Count).ToArray();
                new Random(options.Seed * 7919 + stage * 101 + epoch).Shuffle(order);
                for (int batchStart = 0; batchStart < order.Length; batchStart += options.BatchSize)
                {
                    cancellation.ThrowIfCancellationRequested();
                    int step = epoch * stepsPerEpoch + batchStart / options.BatchSize;
                    SetLearningRate(optimizer, step, stageSteps);
                    var batch = order.Skip(batchStart).Take(options.BatchSize).Select(i => train[i]).ToArray();
                    var (value, batchTokens) = NoCollection.Run(() =>
                    {
                        using var scope = NewDisposeScope();
                        var (loss, counted) = Loss(batch, mode, kind);
                        double lossValue = loss.item<float>();
                        if (double.IsFinite(lossValue))
                        {
                            optimizer.zero_grad();
                            loss.backward();
                            nn.utils.clip_grad_norm_(parameters, options.ClipNorm);
                            optimizer.step();
                        }
                        return (lossValue, counted);
                    });
                    if (!double.IsFinite(value))
                        throw new TrainingDivergedException($"the loss became {value} at epoch {epoch + 1}, step {step + 1}; lower the learning rate" +
                            (checkpointDirectory is null ? "" : $" (the last good checkpoint is kept in {checkpointDirectory})"));
                    tokens += batchTokens;
                    totalSteps++;
                    if (double.IsNaN(firstLoss)) firstLoss = value;
                    lastLoss = value;
                    var elapsed = clock.Elapsed;
                    int done = step + 1;
                    progress?.Report(new TrainingProgress(epoch + 1, options.Epochs, done, stageSteps, value, tokens / Math.Max(elapsed.TotalSeconds, 1e-9),
                        elapsed, TimeSpan.FromSeconds(elapsed.TotalSeconds / Math.Max(totalSteps, 1) * (stageSteps - done + (stages.Count - stage - 1) * stageSteps))));
                }

                validationLosses.Add(validation.Count > 0 ? Evaluate(validation, mode, kind) : double.NaN);
                if (checkpointDirectory is not null) SaveCheckpoint(checkpointDirectory, optimizer, new TrainerState(stage, epoch + 1));
            }
            foreach (var p in parameters) p.requires_grad = false;
            state = null;
        }
        plugin.SetTraining(false);
        return new TrainingReport(totalSteps, tokens, firstLoss, lastLoss, validationLosses, clock.Elapsed);
    }

    /// <summary>Mean loss over <paramref name="data"/> in the plugin's training mode, without gradients.</summary>
    public double Evaluate(IReadOnlyList<TrainingSequence> data, CombinationMode mode, LossKind kind)
    {
        plugin.SetTraining(false);
        using var noGrad = no_grad();
        double total = 0;
        long count = 0;
        foreach (var batch in data.Chunk(options.BatchSize))
        {
            var (value, batchTokens) = NoCollection.Run(() =>
            {
                using var scope = NewDisposeScope();
                var (loss, counted) = Loss(batch, mode, kind);
                return ((double)loss.item<float>(), counted);
            });
            total += value * batchTokens;
            count += batchTokens;
        }
        return count == 0 ? double.NaN : total / count;
    }

    // What each stage trains: the plugin in its mode; or, two-stage, the side network in parallel and then the gate.
    private IEnumerable<(CombinationMode Mode, LossKind Kind, Parameter[] Parameters)> Stages()
    {
        var all = plugin.NamedParameters().ToList();
        Parameter[] Where(Func<string, bool> keep) => all.Where(p => keep(p.Name)).Select(p => p.Parameter).ToArray();
        bool gated = plugin.Gate is not null;
        if (!gated)
            yield return (plugin.Mode, LossKind.Plugin, Where(_ => true));
        else if (options.GateObjective == GateObjective.Joint)
            yield return (plugin.Mode, LossKind.JointGate, Where(_ => true));
        else
        {
            var stageOneMode = plugin.Mode == CombinationMode.Switch ? CombinationMode.Side : CombinationMode.Parallel;
            yield return (stageOneMode, LossKind.Plugin, Where(n => !n.StartsWith("gate.")));
            yield return (stageOneMode, LossKind.GateOnly, Where(n => n.StartsWith("gate.")));
        }
    }

    private (Tensor Loss, long Tokens) Loss(IReadOnlyList<TrainingSequence> batch, CombinationMode mode, LossKind kind)
    {
        var sequences = batch.Select(s => s.Tokens.Length > options.MaxSequenceLength ? s.Tokens[..options.MaxSequenceLength] : s.Tokens).ToArray();
        int length = sequences.Max(s => s.Length);
        var targets = new long[batch.Count * length];
        var mask = new float[batch.Count * length];
        long counted = 0;
        for (int b = 0; b < batch.Count; b++)
            for (int t = 0; t + 1 < sequences[b].Length; t++)
            {
                targets[b * length + t] = sequences[b][t + 1];
                if (t + 1 >= batch[b].PromptLength) { mask[b * length + t] = 1; counted++; }
            }
        var tokens = model.PadTokens(sequences, length);
        using var outputs = new PluginForward(model, plugin).Run(tokens, sequences.Select(s => s.Length).ToArray(), mode);
        var loss = PluginLoss.Compute(outputs, tensor(targets, [batch.Count, length], device: model.Device),
            tensor(mask, [batch.Count, length], device: model.Device), kind, options.Lambda, options.Delta, options.GateLabel, options.WordStarts);
        return (loss, counted);
    }

    private void SetLearningRate(optim.Optimizer optimizer, int step, int totalSteps)
    {
        int warmup = Math.Max(1, (int)(options.WarmupFraction * totalSteps));
        double factor = step < warmup
            ? (step + 1.0) / warmup
            : 0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * (step - warmup) / Math.Max(1, totalSteps - warmup)));
        foreach (var group in optimizer.ParamGroups) group.LearningRate = options.LearningRate * factor;
    }

    private void SaveCheckpoint(string directory, OptimizerHelper optimizer, TrainerState state)
    {
        plugin.Save(directory);
        optimizer.save_state_dict(Path.Combine(directory, OptimizerFile));
        File.WriteAllText(Path.Combine(directory, StateFile), JsonSerializer.Serialize(state));
    }

    private TrainerState? LoadState(string directory)
    {
        var path = Path.Combine(directory, StateFile);
        if (!File.Exists(path)) return null;
        var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path))
            ?? throw new InvalidDataException($"{path} is empty");
        using var saved = PersonalPlugin.Load(directory, model);
        var savedParameters = saved.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
        using (no_grad())
            foreach (var (name, parameter) in plugin.NamedParameters()) parameter.copy_(savedParameters[name]);
        return state;
    }

    private sealed record TrainerState(int Stage, int EpochsDone);
}
