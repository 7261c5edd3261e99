using Spa.Model.Sampling;

namespace Spa.Model.Generation;

/// <summary>A finished beam: its generated tokens and their summed log-probability.</summary>
public sealed record BeamHypothesis(IReadOnlyList<int> Tokens, double LogProbability, double Score);

/// <summary>
/// Beam search as Hugging Face runs it (and as the SPA paper evaluates): at each step every live beam proposes its
/// best continuations, the best <c>width</c> that do not end the sequence live on, those that end it are kept as
/// hypotheses scored by logprob / length^lengthPenalty. All live beams step in one forward; a beam that continues
/// another takes a copy of its cache slot.
/// </summary>
public sealed class BeamSearch(Generator generator)
{
    public BeamHypothesis Run(IReadOnlyList<int> prompt, int maxTokens, int width, double lengthPenalty, CancellationToken cancellation = default)
    {
        generator.CheckPrompt(prompt);
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), "max tokens must be positive");
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), "beam width must be >= 1");
        var model = generator.Model;
        int vocab = model.Config.VocabSize;
        int capacity = Math.Min(model.Config.MaxSeqLen, prompt.Count + maxTokens);
        using var cache = model.CreateCache(2 * width, capacity);

        var live = new List<Beam> { new(0, [], 0) };
        float[] logits = StepAll(generator.Stepper, cache, [0], [prompt]);
        var finished = new List<BeamHypothesis>();
        double Score(double logProbability, int length) => logProbability / Math.Pow(length, lengthPenalty);

        for (int step = 1; step <= maxTokens; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            var candidates = new List<(int Beam, int Token, double LogProbability)>();
            for (int b = 0; b < live.Count; b++)
            {
                var row = logits.AsSpan(b * vocab, vocab);
                var logProbabilities = Sampler.LogSoftmax(row);
                foreach (int token in TopIndices(logProbabilities, 2 * width))
                    candidates.Add((b, token, live[b].LogProbability + logProbabilities[token]));
            }
            candidates.Sort((x, y) => y.LogProbability.CompareTo(x.LogProbability) is var c && c != 0 ? c
                : x.Beam != y.Beam ? x.Beam.CompareTo(y.Beam) : x.Token.CompareTo(y.Token));

            var next = new List<(Beam Parent, int Token, double LogProbability)>();
            for (int rank = 0; rank < candidates.Count && next.Count < width; rank++)
            {
                var (b, token, logProbability) = candidates[rank];
                var tokens = live[b].Tokens.Append(token).ToArray();
                if (generator.IsEndOfSequence(token))
                {
                    if (rank < width) finished.Add(new BeamHypothesis(tokens, logProbability, Score(logProbability, tokens.Length)));
                    continue;
                }
                next.Add((live[b], token, logProbability));
            }

            bool contextFull = prompt.Count + step >= capacity;
            if (next.Count == 0 || step == maxTokens || contextFull || Done(finished, next, width, step, Score))
            {
                finished.AddRange(next.Select(n => new BeamHypothesis(n.Parent.Tokens.Append(n.Token).ToArray(), n.LogProbability, Score(n.LogProbability, step))));
                break;
            }

            // Live beams alternate between the two halves of the cache so that copying never overwrites a parent.
            int half = live[0].Slot < width ? width : 0;
            var children = new List<Beam>();
            for (int k = 0; k < next.Count; k++)
            {
                cache.CopySlot(next[k].Parent.Slot, half + k);
                children.Add(new Beam(half + k, [.. next[k].Parent.Tokens, next[k].Token], next[k].LogProbability));
            }
            live = children;
            logits = StepAll(generator.Stepper, cache, live.Select(b => b.Slot).ToArray(), live.Select(b => (IReadOnlyList<int>)[b.Tokens[^1]]).ToArray());
        }
        return finished.OrderByDescending(h => h.Score).First();
    }

    // Hugging Face's default stopping rule: enough hypotheses, and none of the live beams can beat the worst of them now.
    private static bool Done(List<BeamHypothesis> finished, List<(Beam Parent, int Token, double LogProbability)> next, int width, int length, Func<double, int, double> score)
    {
        if (finished.Count < width) return false;
        double worstKept = finished.Select(h => h.Score).OrderByDescending(s => s).Take(width).Min();
        return score(next[0].LogProbability, length) <= worstKept;
    }

    private static float[] StepAll(ITokenStepper stepper, KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> tokens)
    {
        using var logits = stepper.Step(cache, slots, tokens);
        return HostCopy.Floats(logits);
    }

    private static IEnumerable<int> TopIndices(float[] values, int count) =>
        Enumerable.Range(0, values.Length).OrderByDescending(i => values[i]).ThenBy(i => i).Take(count);

    private sealed record Beam(int Slot, IReadOnlyList<int> Tokens, double LogProbability);
}
