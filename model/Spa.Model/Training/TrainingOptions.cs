using Spa.Model.Plugins;

namespace Spa.Model.Training;

/// <summary>How a plugin is trained. Defaults suit a small base on a CPU.</summary>
public sealed record TrainingOptions
{
    public int Epochs { get; init; } = 3;
    public int BatchSize { get; init; } = 8;
    public double LearningRate { get; init; } = 3e-3;
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Share of all steps spent warming the learning rate up linearly; a cosine decay to 10% follows.</summary>
    public double WarmupFraction { get; init; } = 0.05;
    public double ClipNorm { get; init; } = 1.0;
    public int Seed { get; init; } = 0;

    /// <summary>Longest training sequence (prompt and target) in tokens; longer ones are truncated.</summary>
    public int MaxSequenceLength { get; init; } = 256;

    /// <summary>
    /// For switch and spa: two-stage (parallel, then the gate on the label below) or joint (gate and side network
    /// together). Two-stage is the default: on the personal task it gives the better quality-versus-M curve (docs/method.md).
    /// </summary>
    public GateObjective GateObjective { get; init; } = GateObjective.TwoStage;

    /// <summary>The price of one round trip in the joint objective, in nats.</summary>
    public double Lambda { get; init; } = 0.05;

    /// <summary>Two-stage label: a token needs the edge when log P_parallel(y) - log P_base(y) > Delta.</summary>
    public double Delta { get; init; } = 1.0;

    /// <summary>Two-stage labels per token or per whole word; words need <see cref="WordStarts"/>.</summary>
    public GateLabel GateLabel { get; init; } = GateLabel.Word;

    /// <summary>For each token id, whether it begins a word (<see cref="Tokenizers.WordStarts"/>).</summary>
    public IReadOnlyList<bool>? WordStarts { get; init; }

    public void Validate()
    {
        if (Epochs <= 0) throw new ArgumentException($"epochs must be positive, got {Epochs}");
        if (BatchSize <= 0) throw new ArgumentException($"batch size must be positive, got {BatchSize}");
        if (!(LearningRate > 0)) throw new ArgumentException($"learning rate must be positive, got {LearningRate}");
        if (!(Lambda >= 0)) throw new ArgumentException($"lambda must be >= 0, got {Lambda}");
        if (!Enum.IsDefined(GateObjective)) throw new ArgumentException($"gate objective must be joint or two-stage, got {(int)GateObjective}");
        if (MaxSequenceLength < 2) throw new ArgumentException("the longest sequence must hold at least 2 tokens");
    }
}

/// <summary>
/// One training sequence: BOS, prompt and target tokens; the loss counts only predictions of the target.
/// <paramref name="Scored"/> marks, per token, the targets a task's quality is measured on (a personal corpus's private
/// tokens); null means every target token. Calibrating the gate's threshold counts quality there.
/// </summary>
public sealed record TrainingSequence(int[] Tokens, int PromptLength, bool[]? Scored = null)
{
    /// <summary>Whether predicting token <paramref name="index"/> counts for the task's quality.</summary>
    public bool IsScored(int index) => index >= PromptLength && (Scored?[index] ?? true);
}

/// <summary>Where training stands, reported after every step.</summary>
public sealed record TrainingProgress(int Epoch, int Epochs, int Step, int TotalSteps, double Loss, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Remaining);

/// <summary>What training did.</summary>
public sealed record TrainingReport(int Steps, long Tokens, double FirstLoss, double FinalLoss, IReadOnlyList<double> ValidationLosses, TimeSpan Elapsed);

/// <summary>Training cannot go on: the loss became NaN or infinite. The last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
