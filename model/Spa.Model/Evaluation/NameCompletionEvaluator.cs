using Spa.Model.Generation;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;

namespace Spa.Model.Evaluation;

/// <summary>A story cut just before one of its private names: the tokens before it (BOS first) and the name's tokens.</summary>
public sealed record NamePrompt(int[] Prompt, int[] Name);

/// <summary>
/// What free-running generation from <see cref="NamePrompt"/>s gives. Name-start accuracy: the first generated token is
/// the name's first. Whole-name exact match: the name's tokens come out in order and the word ends there. Private-token
/// accuracy: the name's tokens reproduced before the first wrong one, over all the names' tokens (a token after a
/// wrong one is never counted right: the generation has left the name). M and bytes are per generated token, from the
/// calls that crossed the <see cref="EdgeTransport"/>.
/// </summary>
public sealed record NameCompletionResult(
    int Prompts,
    long GeneratedTokens,
    double NameStartAccuracy,
    double WholeNameExactMatch,
    double PrivateTokenAccuracy,
    double M,
    long RoundTrips,
    double BytesUpPerToken,
    double BytesDownPerToken);

/// <summary>
/// The personal task generated, not teacher-forced: prompts cut just before a private name, greedy generation of a
/// fixed number of tokens with the base or a plugin in a mode, split between cloud and edge by a
/// <see cref="PluginStepper"/>, so that M and bytes are counted from real calls.
/// </summary>
public sealed class NameCompletionEvaluator(LlamaModel model, ITokenizer tokenizer)
{
    private const int PromptsPerBatch = 32;
    private readonly bool[] _wordStarts = WordStarts.Of(tokenizer);

    /// <summary>
    /// Every private name in <paramref name="stories"/> (in order, at most <paramref name="limit"/>) with the text before
    /// it, where the prompt leaves room for <paramref name="generate"/> tokens in the model's context.
    /// </summary>
    public IReadOnlyList<NamePrompt> Prompts(IReadOnlyList<PersonalStory> stories, int generate, int limit = int.MaxValue)
    {
        var prompts = new List<NamePrompt>();
        foreach (var story in stories)
        {
            var (tokens, names) = PersonalCorpus.NameTokens(tokenizer, story.Text, story.PrivateSpans);
            foreach (var (first, count) in names)
            {
                if (prompts.Count == limit) return prompts;
                if (first + generate <= model.Config.MaxSeqLen) prompts.Add(new NamePrompt(tokens[..first], tokens[first..(first + count)]));
            }
        }
        return prompts;
    }

    /// <summary>
    /// The free-running evaluation as a row of <c>spa eval</c> (task "personal-free-running"): score and private-token
    /// accuracy are the names' tokens reproduced, in percent.
    /// </summary>
    public EvaluationRow Row(IReadOnlyList<PersonalStory> stories, PersonalPlugin? plugin, CombinationMode mode, EvaluationSettings settings, int generate,
        CancellationToken cancellation = default)
    {
        var r = Evaluate(Prompts(stories, generate), plugin, mode, settings, generate, cancellation);
        bool gated = mode is CombinationMode.Switch or CombinationMode.Spa;
        return new EvaluationRow("personal-free-running", TaskEvaluator.ModeName(mode, settings), plugin is null ? null : PluginNames.Name(plugin.Kind),
            100 * r.PrivateTokenAccuracy, null, r.M, plugin is null ? null : r.BytesUpPerToken, plugin is null ? null : r.BytesDownPerToken, 100 * r.PrivateTokenAccuracy,
            Tau: gated && settings.MBudget is null ? settings.Tau ?? plugin?.GateSettings?.Tau : null, MBudget: settings.MBudget,
            ParametersPercent: plugin is null ? null : 100.0 * plugin.DeviceParameterCount / model.ParameterCount,
            Examples: r.Prompts, Tokens: r.GeneratedTokens, NameStartAccuracy: 100 * r.NameStartAccuracy, WholeNameExactMatch: 100 * r.WholeNameExactMatch);
    }

    public NameCompletionResult Evaluate(IReadOnlyList<NamePrompt> prompts, PersonalPlugin? plugin, CombinationMode mode, EvaluationSettings settings,
        int generate, CancellationToken cancellation = default)
    {
        if (prompts.Count == 0) throw new ArgumentException("there are no prompts: the stories name nobody");
        if (plugin is null && mode != CombinationMode.Base) throw new ArgumentException($"mode '{PluginNames.Name(mode)}' needs a plugin");
        var transport = new EdgeTransport(settings.Activation);
        var stepper = plugin is null || mode == CombinationMode.Base ? null
            : new PluginStepper(model, plugin, mode, transport, settings.Placement, TaskEvaluator.GatePolicy(plugin, settings));
        var generator = new Generator((ITokenStepper?)stepper ?? model);
        int starts = 0, whole = 0, nameTokens = 0, rightTokens = 0;
        long generated = 0;
        foreach (var batch in prompts.Chunk(PromptsPerBatch))
        {
            cancellation.ThrowIfCancellationRequested();
            var outputs = generator.DecodeBatchGreedy(batch.Select(p => (IReadOnlyList<int>)p.Prompt).ToArray(), generate, cancellation);
            for (int i = 0; i < batch.Length; i++)
            {
                var (name, output) = (batch[i].Name, outputs[i]);
                generated += output.Count;
                int right = 0;
                while (right < name.Length && right < output.Count && output[right] == name[right]) right++;
                nameTokens += name.Length;
                rightTokens += right;
                if (right > 0) starts++;
                if (right == name.Length && (output.Count == right || _wordStarts[output[right]])) whole++;
            }
        }
        long tokens = stepper?.Tokens ?? generated;
        return new NameCompletionResult(prompts.Count, generated, (double)starts / prompts.Count, (double)whole / prompts.Count,
            (double)rightTokens / nameTokens, stepper?.RoundTripsPerToken ?? 0, transport.RoundTrips,
            (double)transport.BytesUp / Math.Max(tokens, 1), (double)transport.BytesDown / Math.Max(tokens, 1));
    }
}
