namespace Spa.Model.Sampling;

/// <summary>
/// How the next token is chosen. Temperature 0 is greedy. With <see cref="BeamWidth"/> above 1 the whole sequence is
/// chosen by beam search instead and the stochastic settings are ignored.
/// </summary>
public sealed record SamplingOptions
{
    public double Temperature { get; init; }
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>OpenAI's: subtracted once from the logit of every token the generation has produced (the prompt does not count).</summary>
    public double PresencePenalty { get; init; }

    /// <summary>OpenAI's: subtracted from a token's logit once for every time the generation has produced it.</summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>Added to the logits of the given tokens before anything is chosen (OpenAI's <c>logit_bias</c>).</summary>
    public IReadOnlyDictionary<int, double> LogitBias { get; init; } = new Dictionary<int, double>();
    public ulong Seed { get; init; } = 42;
    public int BeamWidth { get; init; } = 1;

    /// <summary>Beam scores are divided by length^LengthPenalty (0: pure sum of log-probabilities).</summary>
    public double LengthPenalty { get; init; } = 1.0;

    public static SamplingOptions Greedy { get; } = new();

    public void Validate()
    {
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new ArgumentException($"temperature must be a finite number >= 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top-k must be >= 0 (0 turns it off), got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty)) throw new ArgumentException($"repetition penalty must be a finite number > 0, got {RepetitionPenalty}");
        if (!(PresencePenalty is >= -2 and <= 2)) throw new ArgumentException($"presence penalty must be in [-2, 2], got {PresencePenalty}");
        if (!(FrequencyPenalty is >= -2 and <= 2)) throw new ArgumentException($"frequency penalty must be in [-2, 2], got {FrequencyPenalty}");
        foreach (var (token, bias) in LogitBias)
            if (token < 0 || !(bias is >= -100 and <= 100)) throw new ArgumentException($"logit bias must map token ids to values in [-100, 100], got {token}: {bias}");
        if (BeamWidth < 1) throw new ArgumentException($"beam width must be >= 1, got {BeamWidth}");
        if (double.IsNaN(LengthPenalty) || double.IsInfinity(LengthPenalty)) throw new ArgumentException("length penalty must be finite");
    }
}
