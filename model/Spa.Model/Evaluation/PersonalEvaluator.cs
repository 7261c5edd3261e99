using Spa.Model.Latency;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;

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
        var positions = TeacherForcedPositions.Measure(model, mode == CombinationMode.Base ? null : plugin, AlwaysAsking(mode),
            TeacherForcedPositions.FromStories(stories, tokenizer), cancellation: cancellation);
        var edge = mode switch
        {
            CombinationMode.Base => new bool[positions.Count],
            CombinationMode.Side or CombinationMode.Parallel => Enumerable.Repeat(true, positions.Count).ToArray(),
            _ => positions.Decide(TaskEvaluator.GatePolicy(plugin!, settings)),
        };
        var metrics = positions.Score(edge);

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

    /// <summary>The mode that asks the edge at every token and whose predictions a gated mode takes where it asks: side for switch, parallel for spa.</summary>
    public static CombinationMode AlwaysAsking(CombinationMode mode) => mode switch
    {
        CombinationMode.Switch => CombinationMode.Side,
        CombinationMode.Spa => CombinationMode.Parallel,
        _ => mode,
    };
}
