using System.Text.Json.Serialization;
using Spa.Model.Generation;
using Spa.Model.Plugins;
using Spa.Model.Sampling;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;

namespace Spa.Model.Evaluation;

/// <summary>One line of an evaluation table (fields that do not apply are null).</summary>
public sealed record EvaluationRow(
    string Task,
    string Mode,
    string? Kind,
    double? Score,
    [property: JsonPropertyName("rougeL")] double? RougeL,
    double M,
    double? BytesUpPerToken,
    double? BytesDownPerToken,
    double? PrivateTokenAccuracy,
    double? Rouge1 = null,
    double? Rouge2 = null,
    double? ExactMatch = null,
    double? GateRecall = null,
    double? GatePrecision = null,
    double? Tau = null,
    double? MBudget = null,
    double? ParametersPercent = null,
    int Examples = 0,
    long Tokens = 0,
    string? Plugin = null,
    double? TokenAccuracy = null,
    double? NameStartAccuracy = null,
    double? WholeNameExactMatch = null);

/// <summary>How generation tasks are evaluated.</summary>
public sealed record EvaluationSettings
{
    /// <summary>Beam width; the paper evaluates with 4. 1 is greedy.</summary>
    public int Beams { get; init; } = 4;
    public double LengthPenalty { get; init; } = 1.0;
    public int MaxNewTokens { get; init; } = 48;
    public TapPlacement Placement { get; init; } = TapPlacement.Edge;
    public ActivationType Activation { get; init; } = ActivationType.Fp32;

    /// <summary>tau for switch and spa; ignored when <see cref="MBudget"/> is set.</summary>
    public double? Tau { get; init; }

    /// <summary>A round-trip budget for spa and switch (the mode "spa@m&lt;=B").</summary>
    public double? MBudget { get; init; }
}

/// <summary>
/// Generates answers for a task's examples with the base alone or with a plugin in a combination mode, and scores
/// them: ROUGE-1/2/L F1 for summaries and conversational answers, exact match for SciQ. M and bytes per token come
/// from the round trips the generation really made.
/// </summary>
public sealed class TaskEvaluator(LlamaModel model, ITokenizer tokenizer)
{
    public EvaluationRow Evaluate(string taskName, IReadOnlyList<TaskExample> examples, PersonalPlugin? plugin, CombinationMode mode,
        EvaluationSettings settings, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        if (examples.Count == 0) throw new ArgumentException($"task {taskName} has no examples to evaluate");
        if (plugin is null && mode != CombinationMode.Base) throw new ArgumentException($"mode '{PluginNames.Name(mode)}' needs a plugin");
        var transport = new EdgeTransport(settings.Activation);
        PluginStepper? pluginStepper = plugin is null ? null : new PluginStepper(model, plugin, mode, transport, settings.Placement, GatePolicy(plugin, settings));
        ITokenStepper stepper = pluginStepper ?? (ITokenStepper)model;
        var generator = new TextGenerator(stepper, tokenizer);
        var sampling = new SamplingOptions { BeamWidth = settings.Beams, LengthPenalty = settings.LengthPenalty };
        IReadOnlyList<string> stops = taskName == "cnndm" ? [] : ["\n"];
        bool exactMatch = taskName == "sciq";

        var rouge = new List<RougeResult>();
        int matches = 0, done = 0;
        foreach (var example in examples)
        {
            cancellation.ThrowIfCancellationRequested();
            var prompt = TokenizedExample.Tokenize(tokenizer, example, model.Config.MaxSeqLen, settings.MaxNewTokens).PromptTokens;
            var answer = generator.Generate(prompt, settings.MaxNewTokens, sampling, stops, cancellation: cancellation).Text;
            rouge.Add(Rouge.Score(example.Target, answer, useStemmer: true));
            if (Evaluation.ExactMatch.IsMatch(example.Target, answer)) matches++;
            progress?.Report(++done);
        }

        var scores = RougeScores.Mean(rouge);
        double exact = 100.0 * matches / examples.Count;
        long tokens = pluginStepper?.Tokens ?? 0;
        bool usesEdge = plugin is not null && mode != CombinationMode.Base;
        return new EvaluationRow(
            taskName, ModeName(mode, settings), plugin is null ? null : PluginNames.Name(plugin.Kind),
            exactMatch ? exact : scores.RougeL, scores.RougeL,
            pluginStepper?.RoundTripsPerToken ?? 0,
            usesEdge ? (double)transport.BytesUp / Math.Max(tokens, 1) : null,
            usesEdge ? (double)transport.BytesDown / Math.Max(tokens, 1) : null,
            null,
            Rouge1: scores.Rouge1, Rouge2: scores.Rouge2, ExactMatch: exactMatch ? exact : null,
            Tau: mode is CombinationMode.Spa or CombinationMode.Switch && settings.MBudget is null ? settings.Tau ?? plugin?.GateSettings?.Tau : null,
            MBudget: settings.MBudget,
            ParametersPercent: plugin is null ? null : 100.0 * plugin.DeviceParameterCount / model.ParameterCount,
            Examples: examples.Count, Tokens: tokens);
    }

    /// <summary>The gate policy the settings ask for: a round-trip budget, a tau, or the plugin's own tau.</summary>
    public static Func<IGatePolicy> GatePolicy(PersonalPlugin plugin, EvaluationSettings settings)
    {
        if (settings.MBudget is { } budget) return () => new BudgetPolicy(budget, plugin.GateSettings?.Tau ?? 0.5);
        double tau = settings.Tau ?? plugin.GateSettings?.Tau ?? 0.5;
        return () => new ThresholdPolicy(tau);
    }

    public static string ModeName(CombinationMode mode, EvaluationSettings settings) =>
        settings.MBudget is { } budget && mode is CombinationMode.Spa or CombinationMode.Switch
            ? $"{PluginNames.Name(mode)}@m<={budget:0.###}"
            : PluginNames.Name(mode);
}
