namespace Spa.Model.Tasks;

/// <summary>
/// Counts over predicted positions how well a personalised model does on the private tokens of
/// <see cref="PersonalCorpus"/> and how well its gate finds them. The caller runs the model (teacher forcing: the
/// true prefix, the argmax prediction of the next token) and the gate; this only counts. A ratio with nothing to
/// count (no private position, no edge decision) is NaN.
/// </summary>
public sealed class PrivateTokenMetrics
{
    /// <summary>Positions counted.</summary>
    public long Positions { get; private set; }

    /// <summary>Positions whose target is private.</summary>
    public long PrivatePositions { get; private set; }

    /// <summary>Positions predicted correctly, private or not.</summary>
    public long Correct { get; private set; }

    /// <summary>Private positions predicted correctly.</summary>
    public long PrivateCorrect { get; private set; }

    /// <summary>Positions where the gate asked the edge.</summary>
    public long EdgeDecisions { get; private set; }

    /// <summary>Private positions where the gate asked the edge.</summary>
    public long EdgeOnPrivate { get; private set; }

    public double Accuracy => Ratio(Correct, Positions);

    /// <summary>Correct predictions among private positions: how often the user's names come out right.</summary>
    public double PrivateAccuracy => Ratio(PrivateCorrect, PrivatePositions);

    /// <summary>Private positions the gate sent to the edge, among all private positions.</summary>
    public double GateRecall => Ratio(EdgeOnPrivate, PrivatePositions);

    /// <summary>Private positions among those the gate sent to the edge.</summary>
    public double GatePrecision => Ratio(EdgeOnPrivate, EdgeDecisions);

    /// <summary>Round trips to the edge per position.</summary>
    public double M => Ratio(EdgeDecisions, Positions);

    /// <summary>Counts one position: its target token, the model's prediction, whether the target is private and whether the gate chose the edge.</summary>
    public void Add(int target, int predicted, bool isPrivate, bool edge)
    {
        Positions++;
        if (predicted == target) Correct++;
        if (edge) EdgeDecisions++;
        if (!isPrivate) return;
        PrivatePositions++;
        if (predicted == target) PrivateCorrect++;
        if (edge) EdgeOnPrivate++;
    }

    /// <summary>
    /// Counts a whole sequence as <see cref="PersonalCorpus.PrivatePositions"/> gives it. A teacher-forced forward
    /// over <c>tokens[..^1]</c> yields one row per input position; row j predicts <c>tokens[j + 1]</c>, so
    /// <paramref name="predicted"/> and <paramref name="edge"/> hold one entry per row, <c>tokens.Count - 1</c> in all.
    /// </summary>
    public void AddSequence(IReadOnlyList<int> tokens, IReadOnlyList<bool> isPrivateTarget, IReadOnlyList<int> predicted, IReadOnlyList<bool> edge)
    {
        if (isPrivateTarget.Count != tokens.Count)
            throw new ArgumentException($"{tokens.Count} tokens but {isPrivateTarget.Count} private marks", nameof(isPrivateTarget));
        if (predicted.Count != tokens.Count - 1 || edge.Count != tokens.Count - 1)
            throw new ArgumentException($"{tokens.Count} tokens need {tokens.Count - 1} predictions and gate decisions, got {predicted.Count} and {edge.Count}");
        for (var j = 0; j < predicted.Count; j++) Add(tokens[j + 1], predicted[j], isPrivateTarget[j + 1], edge[j]);
    }

    private static double Ratio(long part, long whole) => whole == 0 ? double.NaN : (double)part / whole;
}
