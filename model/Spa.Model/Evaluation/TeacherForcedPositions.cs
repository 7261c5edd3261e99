using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Training;
using static TorchSharp.torch;

namespace Spa.Model.Evaluation;

/// <summary>
/// Teacher-forced predictions at every target position of some sequences: the base's argmax, the argmax of a plugin
/// in the mode that always asks the edge (parallel, side, or LoRA and adapters inside the base), and the gate's
/// probability where the plugin has a gate. Measured once, they answer for any gate policy without running the
/// model again: <see cref="Decide"/> gives a policy's decisions, <see cref="Score"/> what they predict.
/// </summary>
public sealed class TeacherForcedPositions
{
    private const int SequencesPerForward = 8;

    public TeacherForcedPositions(int[] sequence, int[] target, int[] basePrediction, int[] pluginPrediction, double[]? probability, bool[] scored)
    {
        (Sequence, Target, BasePrediction, PluginPrediction, Probability, Scored) = (sequence, target, basePrediction, pluginPrediction, probability, scored);
    }

    /// <summary>For each position, the index of its sequence.</summary>
    public int[] Sequence { get; }
    public int[] Target { get; }
    public int[] BasePrediction { get; }

    /// <summary>The prediction of the always-asking mode; the base's when there is no plugin.</summary>
    public int[] PluginPrediction { get; }

    /// <summary>The gate's edge probability; null when the plugin has no gate.</summary>
    public double[]? Probability { get; }

    /// <summary>Whether the position counts for the task's quality (a private target of a personal corpus).</summary>
    public bool[] Scored { get; }

    public int Count => Target.Length;

    /// <summary>
    /// Runs the base and <paramref name="plugin"/> in <paramref name="alwaysMode"/> over <paramref name="sequences"/>, each
    /// cut to <paramref name="maxLength"/> tokens (and the model's context).
    /// </summary>
    public static TeacherForcedPositions Measure(LlamaModel model, PersonalPlugin? plugin, CombinationMode alwaysMode, IReadOnlyList<TrainingSequence> sequences,
        int maxLength = int.MaxValue, CancellationToken cancellation = default)
    {
        if (plugin is not null && alwaysMode is not (CombinationMode.Side or CombinationMode.Parallel))
            throw new ArgumentException($"a plugin's predictions are measured in the mode that always asks the edge (side or parallel), not '{PluginNames.Name(alwaysMode)}'");
        var forward = plugin is null ? null : new PluginForward(model, plugin);
        plugin?.SetTraining(false);
        var sequence = new List<int>();
        var target = new List<int>();
        var basePrediction = new List<int>();
        var pluginPrediction = new List<int>();
        var probability = plugin?.Gate is null ? null : new List<double>();
        var scored = new List<bool>();
        using var noGrad = no_grad();
        int limit = Math.Min(maxLength, model.Config.MaxSeqLen);
        var usable = sequences.Select((s, i) => (Index: i, Tokens: s.Tokens[..Math.Min(s.Tokens.Length, limit)], s)).Where(s => s.Tokens.Length >= 2).ToArray();
        foreach (var batch in usable.Chunk(SequencesPerForward))
        {
            cancellation.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var inputs = batch.Select(s => (IReadOnlyList<int>)s.Tokens[..^1]).ToArray();
            var lengths = inputs.Select(i => i.Count).ToArray();
            var tokens = model.PadTokens(inputs, lengths.Max());
            long[] baseArgMax, pluginArgMax;
            double[]? p = null;
            if (forward is null)
            {
                baseArgMax = model.Forward(tokens, lengths).argmax(-1).cpu().data<long>().ToArray();
                pluginArgMax = baseArgMax;
            }
            else
            {
                using var outputs = forward.Run(tokens, lengths, alwaysMode);
                baseArgMax = outputs.BaseLogits.argmax(-1).cpu().data<long>().ToArray();
                pluginArgMax = outputs.PluginLogits.argmax(-1).cpu().data<long>().ToArray();
                p = outputs.GateLogEdge?.exp().to(ScalarType.Float64).cpu().data<double>().ToArray();
            }
            int width = lengths.Max();
            for (int b = 0; b < batch.Length; b++)
            {
                var (index, kept, original) = batch[b];
                for (int t = Math.Max(0, original.PromptLength - 1); t + 1 < kept.Length; t++)
                {
                    sequence.Add(index);
                    target.Add(kept[t + 1]);
                    basePrediction.Add((int)baseArgMax[b * width + t]);
                    pluginPrediction.Add((int)pluginArgMax[b * width + t]);
                    probability?.Add(p![b * width + t]);
                    scored.Add(original.IsScored(t + 1));
                }
            }
        }
        return new TeacherForcedPositions([.. sequence], [.. target], [.. basePrediction], [.. pluginPrediction], probability?.ToArray(), [.. scored]);
    }

    /// <summary>The personal task's test stories as sequences: BOS and the text, private targets scored.</summary>
    public static IReadOnlyList<TrainingSequence> FromStories(IReadOnlyList<PersonalStory> stories, Tokenizers.ITokenizer tokenizer) =>
        stories.Select(s =>
        {
            var (tokens, isPrivate) = PersonalCorpus.PrivatePositions(tokenizer, s.Text, s.PrivateSpans);
            return new TrainingSequence(tokens, 1, isPrivate);
        }).ToArray();

    /// <summary>Whether the edge is asked at each position: by a fresh <paramref name="newPolicy"/> per sequence, fed in order.</summary>
    public bool[] Decide(Func<IGatePolicy> newPolicy)
    {
        var probability = Probability ?? throw new InvalidOperationException("the plugin has no gate to decide with");
        var edge = new bool[Count];
        IGatePolicy? policy = null;
        for (int i = 0; i < Count; i++)
        {
            if (i == 0 || Sequence[i] != Sequence[i - 1]) policy = newPolicy();
            edge[i] = policy!.Decide(probability[i]);
        }
        return edge;
    }

    /// <summary>Counts what is predicted when the edge is asked where <paramref name="edge"/> says: the plugin's prediction there, the base's elsewhere.</summary>
    public PrivateTokenMetrics Score(IReadOnlyList<bool> edge)
    {
        var metrics = new PrivateTokenMetrics();
        for (int i = 0; i < Count; i++)
            metrics.Add(Target[i], edge[i] ? PluginPrediction[i] : BasePrediction[i], Scored[i], edge[i]);
        return metrics;
    }
}
