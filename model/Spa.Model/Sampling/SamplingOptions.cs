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
        if (BeamWidth < 1) throw new ArgumentException($"beam width must be >= 1, got {BeamWidth}");
        if (double.IsNaN(LengthPenalty) || double.IsInfinity(LengthPenalty)) throw new ArgumentException("length penalty must be finite");
    }
}
