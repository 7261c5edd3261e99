namespace Spa.Model.Sampling;

/// <summary>
/// Picks the next token from one row of logits: the penalties (repetition over the whole history; presence and
/// frequency over the tokens generated after the first <c>promptLength</c>) and the logit bias, then greedy or
/// temperature with top-k and top-p. Works on a CPU copy of the row so that the same seed gives the same text on any device.
/// </summary>
public sealed class Sampler(SamplingOptions options)
{
    private readonly Random _random = new(unchecked((int)options.Seed ^ (int)(options.Seed >> 32)));

    public int Next(ReadOnlySpan<float> logits, IReadOnlyList<int> history, int promptLength)
    {
        var scores = logits.ToArray();
        ApplyRepetitionPenalty(scores, history, options.RepetitionPenalty);
        ApplyOpenAiPenalties(scores, history, promptLength);
        foreach (var (token, bias) in options.LogitBias)
            if (token < scores.Length) scores[token] += (float)bias;
        return options.Temperature == 0 ? ArgMax(scores) : Sample(scores);
    }

    /// <summary>The first index of the largest value, as llama2.c's argmax.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    public static float[] LogSoftmax(ReadOnlySpan<float> logits)
    {
        float max = float.NegativeInfinity;
        foreach (var v in logits) max = Math.Max(max, v);
        double sum = 0;
        foreach (var v in logits) sum += Math.Exp(v - max);
        float logSum = (float)(max + Math.Log(sum));
        var result = new float[logits.Length];
        for (int i = 0; i < logits.Length; i++) result[i] = logits[i] - logSum;
        return result;
    }

    /// <summary>
    /// The log-probability of <paramref name="chosen"/> and the <paramref name="top"/> most likely tokens with theirs,
    /// most likely first, under the model's distribution (the log-softmax of the logits, before penalties and sampling).
    /// </summary>
    public static (float Chosen, (int Token, float Logprob)[] Top) TopLogprobs(ReadOnlySpan<float> logits, int chosen, int top)
    {
        var logprobs = LogSoftmax(logits);
        var order = Enumerable.Range(0, logprobs.Length).OrderByDescending(i => logprobs[i]).ThenBy(i => i).Take(top);
        return (logprobs[chosen], [.. order.Select(i => (i, logprobs[i]))]);
    }

    // CTRL's rule, as in Hugging Face: a seen token's positive logit is divided by the penalty, a negative one multiplied.
    private static void ApplyRepetitionPenalty(float[] scores, IReadOnlyList<int> history, double penalty)
    {
        if (penalty == 1.0) return;
        foreach (int id in history.Distinct())
            scores[id] = scores[id] > 0 ? (float)(scores[id] / penalty) : (float)(scores[id] * penalty);
    }

    // OpenAI's definition: logit -= count * frequency_penalty + (count > 0) * presence_penalty, over generated tokens.
    private void ApplyOpenAiPenalties(float[] scores, IReadOnlyList<int> history, int promptLength)
    {
        if (options.PresencePenalty == 0 && options.FrequencyPenalty == 0) return;
        foreach (var group in history.Skip(promptLength).GroupBy(id => id))
            scores[group.Key] -= (float)(group.Count() * options.FrequencyPenalty + options.PresencePenalty);
    }

    private int Sample(float[] scores)
    {
        int[] order = Enumerable.Range(0, scores.Length).ToArray();
        Array.Sort(order, (a, b) => scores[b].CompareTo(scores[a]) is var c && c != 0 ? c : a.CompareTo(b));
        int keep = options.TopK > 0 ? Math.Min(options.TopK, order.Length) : order.Length;

        double max = scores[order[0]];
        var probabilities = new double[keep];
        double total = 0;
        for (int i = 0; i < keep; i++)
        {
            probabilities[i] = Math.Exp((scores[order[i]] - max) / options.Temperature);
            total += probabilities[i];
        }

        // Nucleus: the smallest prefix of the sorted tokens whose probability reaches top-p.
        double cumulative = 0;
        int nucleus = keep;
        for (int i = 0; i < keep; i++)
        {
            cumulative += probabilities[i] / total;
            if (cumulative >= options.TopP) { nucleus = i + 1; break; }
        }

        double mass = 0;
        for (int i = 0; i < nucleus; i++) mass += probabilities[i];
        double target = _random.NextDouble() * mass;
        for (int i = 0; i < nucleus; i++)
        {
            target -= probabilities[i];
            if (target < 0) return order[i];
        }
        return order[nucleus - 1];
    }
}
