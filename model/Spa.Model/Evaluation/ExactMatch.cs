using System.Text;
using System.Text.RegularExpressions;

namespace Spa.Model.Evaluation;

/// <summary>
/// Exact match of a short answer (SciQ), normalised as SQuAD's evaluation script does: lower-case, ASCII
/// punctuation removed, the articles a/an/the removed, whitespace collapsed.
/// </summary>
public static partial class ExactMatch
{
    /// <summary>
    /// True if the prediction's first line normalises to the same text as the reference: a model that was not told
    /// where to stop runs on past the answer, typically into the next "Question:" line.
    /// </summary>
    public static bool IsMatch(string reference, string prediction) => Normalize(reference) == Normalize(FirstLine(prediction));

    public static string FirstLine(string text)
    {
        var newline = text.IndexOf('\n');
        return newline < 0 ? text : text[..newline];
    }

    public static string Normalize(string text)
    {
        var kept = new StringBuilder(text.Length);
        foreach (var ch in text.ToLowerInvariant())
        {
            // Python's string.punctuation: the printable ASCII characters that are neither letters nor digits.
            if (ch is >= '!' and <= '~' && !char.IsAsciiLetterOrDigit(ch)) continue;
            kept.Append(ch);
        }
        var withoutArticles = Articles().Replace(kept.ToString(), " ");
        return string.Join(' ', withoutArticles.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    [GeneratedRegex(@"\b(a|an|the)\b", RegexOptions.CultureInvariant)]
    private static partial Regex Articles();
}
