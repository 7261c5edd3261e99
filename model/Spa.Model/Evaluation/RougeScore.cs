namespace Spa.Model.Evaluation;

/// <summary>Precision, recall and F1 of one ROUGE variant for one prediction, each in [0, 1].</summary>
public readonly record struct RougeScore(double Precision, double Recall, double F1)
{
    /// <summary>
    /// From the matched units (n-grams, or LCS tokens) and the totals on each side. An empty side scores 0, as in
    /// <c>rouge_score</c>, rather than dividing by zero.
    /// </summary>
    public static RougeScore FromCounts(int matched, int predictionTotal, int referenceTotal)
    {
        var precision = (double)matched / Math.Max(predictionTotal, 1);
        var recall = (double)matched / Math.Max(referenceTotal, 1);
        var f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
        return new RougeScore(precision, recall, f1);
    }
}
