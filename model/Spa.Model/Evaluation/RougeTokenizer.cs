using System.Text;

namespace Spa.Model.Evaluation;

/// <summary>
/// Google <c>rouge_score</c>'s tokenization, itself a copy of ROUGE-1.5.5's: lower-case, every run of characters
/// other than a-z and 0-9 is a separator (so punctuation and non-ASCII letters split words), and with stemming on,
/// tokens longer than 3 characters go through the <see cref="PorterStemmer"/>.
/// </summary>
public static class RougeTokenizer
{
    public static IReadOnlyList<string> Tokenize(string text, bool useStemmer)
    {
        var tokens = new List<string>();
        var current = new StringBuilder();
        foreach (var ch in text)
        {
            var lower = char.ToLowerInvariant(ch);
            if (lower is >= 'a' and <= 'z' or >= '0' and <= '9') current.Append(lower);
            else Flush();
        }
        Flush();
        return tokens;

        void Flush()
        {
            if (current.Length == 0) return;
            var token = current.ToString();
            tokens.Add(useStemmer && token.Length > 3 ? PorterStemmer.Stem(token) : token);
            current.Clear();
        }
    }
}
