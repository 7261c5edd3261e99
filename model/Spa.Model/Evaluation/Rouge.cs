namespace Spa.Model.Evaluation;

/// <summary>ROUGE-1, ROUGE-2 and ROUGE-L of one prediction against its reference.</summary>
public sealed record RougeResult(RougeScore Rouge1, RougeScore Rouge2, RougeScore RougeL);

/// <summary>
/// ROUGE as Google's <c>rouge_score</c> computes <c>rouge1</c>, <c>rouge2</c> and <c>rougeL</c> (not
/// <c>rougeLsum</c>): n-gram overlap with each n-gram counted at most as often as the other side has it, and the
/// longest common subsequence over the whole text.
/// </summary>
public static class Rouge
{
    public static RougeResult Score(string reference, string prediction, bool useStemmer)
    {
        var referenceTokens = RougeTokenizer.Tokenize(reference, useStemmer);
        var predictionTokens = RougeTokenizer.Tokenize(prediction, useStemmer);
        return new RougeResult(
            NGramScore(referenceTokens, predictionTokens, 1),
            NGramScore(referenceTokens, predictionTokens, 2),
            LcsScore(referenceTokens, predictionTokens));
    }

    private static RougeScore NGramScore(IReadOnlyList<string> reference, IReadOnlyList<string> prediction, int n)
    {
        var referenceCounts = NGramCounts(reference, n);
        var predictionCounts = NGramCounts(prediction, n);
        var matched = referenceCounts.Sum(pair => Math.Min(pair.Value, predictionCounts.GetValueOrDefault(pair.Key)));
        return RougeScore.FromCounts(matched, predictionCounts.Values.Sum(), referenceCounts.Values.Sum());
    }

    private static Dictionary<string, int> NGramCounts(IReadOnlyList<string> tokens, int n)
    {
        var counts = new Dictionary<string, int>();
        for (var i = 0; i + n <= tokens.Count; i++)
        {
            // Tokens are [a-z0-9]+, so a space cannot make two different n-grams look alike.
            var key = string.Join(' ', tokens.Skip(i).Take(n));
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }
        return counts;
    }

    private static RougeScore LcsScore(IReadOnlyList<string> reference, IReadOnlyList<string> prediction)
    {
        // The classic dynamic programme, one row at a time: row[j] is the LCS of the reference so far and prediction[..j].
        var previous = new int[prediction.Count + 1];
        var row = new int[prediction.Count + 1];
        foreach (var token in reference)
        {
            for (var j = 1; j <= prediction.Count; j++)
                row[j] = token == prediction[j - 1] ? previous[j - 1] + 1 : Math.Max(previous[j], row[j - 1]);
            (previous, row) = (row, previous);
        }
        return RougeScore.FromCounts(previous[prediction.Count], prediction.Count, reference.Count);
    }
}
