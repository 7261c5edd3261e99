namespace Spa.Model.Evaluation;

/// <summary>ROUGE F1 of a whole evaluation as papers report it: the mean over examples of each F1, times 100.</summary>
public sealed record RougeScores(double Rouge1, double Rouge2, double RougeL, int Count)
{
    public static RougeScores Mean(IReadOnlyCollection<RougeResult> results)
    {
        if (results.Count == 0) throw new ArgumentException("no results to average", nameof(results));
        return new RougeScores(
            100 * results.Average(r => r.Rouge1.F1),
            100 * results.Average(r => r.Rouge2.F1),
            100 * results.Average(r => r.RougeL.F1),
            results.Count);
    }
}
