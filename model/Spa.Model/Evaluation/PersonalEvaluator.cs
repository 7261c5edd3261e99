using Spa.Model.Latency;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Evaluation;

/// <summary>
/// The personalisation task under teacher forcing: at every position the base (or the plugin, where the mode and
/// the gate send the token to the edge) predicts the next token of a user's story. Reports the accuracy at the
/// positions whose target is a private name, the gate's recall and precision on those positions, and M. Bytes per
/// token are M times what one round trip of this plugin sends.
/// </summary>
public sealed class PersonalEvaluator(LlamaModel model, ITokenizer tokenizer)
{
    public EvaluationRow Evaluate(IReadOnlyList<PersonalStory> stories, PersonalPlugin? plugin, CombinationMode mode, EvaluationSettings settings, CancellationToken cancellation = default)
    {
        if (stories.Count == 0) throw new ArgumentException("the personal corpus has no stories");
        if (plugin is null && mode != CombinationMode.Base) throw new ArgumentException($"mode '{PluginNames.Name(mode)}' needs a plugin");
        var metrics = new PrivateTokenMetrics();
        var forward = plugin is null ? null : new PluginForward(model, plugin);
        var newPolicy = plugin is null ? null : TaskEvaluator.GatePolicy(plugin, settings);
        using var noGrad = no_grad();
        foreach (var story in stories)
        {
            cancellation.ThrowIfCancellationRequested();
            var (tokens, isPrivate) = PersonalCorpus.PrivatePositions(tokenizer, story.Text, story.PrivateSpans);
            int length = Math.Min(tokens.Length, model.Config.MaxSeqLen);
            tokens = tokens[..length];
            isPrivate = isPrivate[..length];
            using var scope = NewDisposeScope();
            var input = model.PadTokens([tokens[..^1]], length - 1);
            var (predicted, edge) = forward is null
                ? (ArgMax(model.Forward(input, [length - 1])[0]), new bool[length - 1])
                : Decide(forward.Run(input, [length - 1], mode), mode, newPolicy!());
            metrics.AddSequence(tokens, isPrivate, predicted, edge);
        }

        double m = plugin is null || mode == CombinationMode.Base ? 0
            : plugin.Hook is not null ? PluginTraffic.FixedRoundTripsPerToken(model.Config, plugin.Kind)
            : mode is CombinationMode.Side or CombinationMode.Parallel ? 1 : metrics.M;
        var traffic = plugin is null || m == 0 ? null : PluginTraffic.For(model.Config, plugin.Kind, plugin.Dimensions, settings.Placement, settings.Activation, roundTripsPerToken: m);
        bool gated = mode is CombinationMode.Switch or CombinationMode.Spa;
        return new EvaluationRow("personal", TaskEvaluator.ModeName(mode, settings), plugin is null ? null : PluginNames.Name(plugin.Kind),
            100 * metrics.PrivateAccuracy, null, m,
            traffic is null ? null : m * traffic.BytesUp, traffic is null ? null : m * traffic.BytesDown,
            100 * metrics.PrivateAccuracy,
            GateRecall: gated ? metrics.GateRecall : null, GatePrecision: gated ? metrics.GatePrecision : null,
            Tau: gated && settings.MBudget is null ? settings.Tau ?? plugin?.GateSettings?.Tau : null, MBudget: settings.MBudget,
            ParametersPercent: plugin is null ? null : 100.0 * plugin.DeviceParameterCount / model.ParameterCount,
            Examples: stories.Count, Tokens: metrics.Positions, TokenAccuracy: 100 * metrics.Accuracy);
    }

    // Per position: the edge is asked where the mode always asks, or where the gate policy says so; the prediction
    // then comes from the plugin's logits, else from the base's.
    private static (int[] Predicted, bool[] Edge) Decide(PluginOutputs outputs, CombinationMode mode, IGatePolicy policy)
    {
        using (outputs)
        {
            var basePredictions = ArgMax(outputs.BaseLogits[0]);
            var pluginPredictions = ArgMax(outputs.PluginLogits[0]);
            var edge = new bool[basePredictions.Length];
            if (mode is CombinationMode.Side or CombinationMode.Parallel) Array.Fill(edge, true);
            else if (mode is CombinationMode.Switch or CombinationMode.Spa)
            {
                using var p = outputs.GateLogEdge![0].exp().to(ScalarType.Float64).cpu();
                var probabilities = p.data<double>().ToArray();
                for (int t = 0; t < edge.Length; t++) edge[t] = policy.Decide(probabilities[t]);
            }
            return (edge.Select((e, t) => e ? pluginPredictions[t] : basePredictions[t]).ToArray(), edge);
        }
    }

    private static int[] ArgMax(Tensor logits)
    {
        using var best = logits.argmax(-1).cpu();
        return best.data<long>().ToArray().Select(i => (int)i).ToArray();
    }
}
