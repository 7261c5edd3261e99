using Spa.Model.Tokenizers;

namespace Spa.Model.Tasks;

/// <summary>
/// Draws pronounceable private names for simulated users, so that the method is measured on users drawn at random
/// rather than on names someone chose: two or three syllables of an onset, a vowel and an optional closing consonant
/// ("Brelvoth", "Tasquin"), at most nine letters, capitalised. A name is kept only when the tokenizer splits it into at least
/// <see cref="MinimumTokens"/> tokens (the base has never seen it as one word), and it is not a name the base's stories
/// already use, a word they capitalise, or one of the documented examples.
/// </summary>
public static class RandomNames
{
    public const int MinimumTokens = 2;

    /// <summary>The names of the documented example corpus: drawn users never get them.</summary>
    public static readonly IReadOnlySet<string> DocumentedExamples = new HashSet<string>(StringComparer.Ordinal) { "Zorblax", "Quimby", "Vexa" };

    private static readonly string[] Onsets =
    [
        "b", "br", "bl", "c", "cr", "d", "dr", "f", "fl", "fr", "g", "gr", "h", "j", "k", "kr", "l", "m", "n", "p",
        "pr", "qu", "r", "s", "st", "t", "tr", "th", "v", "w", "z",
    ];

    private static readonly string[] Vowels = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou"];

    // Inside a name a syllable may close with a soft consonant ("Tasquin"); the last one with any of these, or none.
    private static readonly string[] InnerCodas = ["", "", "", "", "n", "r", "l", "s"];

    private static readonly string[] FinalCodas = ["", "", "n", "r", "l", "s", "x", "th", "m", "nd", "rk", "sh", "v", "z"];

    private const int MaximumLetters = 9;

    /// <summary>
    /// <paramref name="count"/> distinct names drawn from <paramref name="seed"/>; the same seed and tokenizer give the
    /// same names.
    /// </summary>
    public static IReadOnlyList<string> Draw(int count, int seed, ITokenizer tokenizer)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var random = new Random(seed);
        var names = new List<string>(count);
        for (int attempt = 0; names.Count < count; attempt++)
        {
            if (attempt == 10_000) throw new InvalidOperationException($"could not draw {count} names that the tokenizer splits into {MinimumTokens} or more tokens");
            var name = Candidate(random);
            if (names.Contains(name) || DocumentedExamples.Contains(name) || PersonalCorpus.IsKnownWord(name)) continue;
            if (tokenizer.Encode(name, bos: false, eos: false).Count < MinimumTokens) continue;
            names.Add(name);
        }
        return names;
    }

    private static string Candidate(Random random)
    {
        while (true)
        {
            int syllables = random.Next(5) < 3 ? 2 : 3;
            var letters = new System.Text.StringBuilder();
            for (int s = 0; s < syllables; s++)
            {
                var onset = Pick(random, Onsets);
                var vowel = Pick(random, Vowels);
                if (onset == "qu" && vowel[0] == 'u') vowel = "a"; // "Quu" is not pronounceable
                letters.Append(onset).Append(vowel).Append(Pick(random, s == syllables - 1 ? FinalCodas : InnerCodas));
            }
            if (letters.Length > MaximumLetters) continue;
            return char.ToUpperInvariant(letters[0]) + letters.ToString(1, letters.Length - 1);
        }
    }

    private static string Pick(Random random, string[] choices) => choices[random.Next(choices.Length)];
}
