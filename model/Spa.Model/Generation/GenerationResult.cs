namespace Spa.Model.Generation;

public enum FinishReason
{
    /// <summary>End of sequence or a stop string.</summary>
    Stop,

    /// <summary>The requested number of tokens was generated.</summary>
    Length,

    /// <summary>The model's context is full.</summary>
    Context,
}

/// <summary>What one generation produced and how long it took.</summary>
public sealed record GenerationResult(
    IReadOnlyList<int> PromptTokens,
    IReadOnlyList<int> Tokens,
    string Text,
    FinishReason Finish,
    double LogProbability,
    TimeSpan TimeToFirstToken,
    TimeSpan Elapsed)
{
    public double TokensPerSecond => Tokens.Count / Math.Max(Elapsed.TotalSeconds, 1e-9);
}
