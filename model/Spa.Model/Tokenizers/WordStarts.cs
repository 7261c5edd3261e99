using System.Text.RegularExpressions;

namespace Spa.Model.Tokenizers;

/// <summary>
/// Which tokens begin a word. A SentencePiece piece continues the word before it when it opens with a letter or digit
/// (" Zor" + "bl" + "ax"), and a byte token continues the character it is part of; every other token (a piece with a
/// leading space, punctuation, BOS, EOS) begins a new word.
/// </summary>
public static partial class WordStarts
{
    /// <summary>For each token id of <paramref name="tokenizer"/>, whether it begins a word.</summary>
    public static bool[] Of(ITokenizer tokenizer)
    {
        var starts = new bool[tokenizer.VocabSize];
        for (int id = 0; id < starts.Length; id++)
        {
            var text = tokenizer.TokenText(id);
            bool continues = text.Length > 0 && char.IsLetterOrDigit(text[0]) || ByteToken().IsMatch(text);
            starts[id] = !continues;
        }
        return starts;
    }

    [GeneratedRegex("^<0x[0-9A-Fa-f]{2}>$")]
    private static partial Regex ByteToken();
}
