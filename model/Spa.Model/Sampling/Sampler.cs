namespace Spa.Model.Sampling;

/// <summary>
/// Picks the next token from one row of logits: repetition penalty, then greedy or temperature with top-k and top-p.
/// Works on a CPU copy of the row so that the same seed gives the same text on any device.
/// </summary>
public sealed class Sampler(SamplingOptions options)
{
    private readonly Random _random = new(unchecked((int)options.Seed ^ (int)(options.Seed >> 32)));

    public int Next(ReadOnlySpan<float> logits, IReadOnlyCollection<int> history)
    {
        var scores = logits.ToArray();
        ApplyRepetitionPenalty(scores, history, options.RepetitionPenalty);
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

    // CTRL's rule, as in Hugging Face: a seen token's positive logit is divided by the penalty, a negative one multiplied.
    private static void ApplyRepetitionPenalty(float[] scores, IReadOnlyCollection<int> history, double penalty)
    {
        if (penalty == 1.0) return;
        foreach (int id in history.Distinct())
            scores[id] = scores[id] > 0 ? (float)(scores[id] / penalty) : (float)(scores[id] * penalty);
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
