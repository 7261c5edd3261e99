namespace Spa.Model.Evaluation;

/// <summary>
/// The Porter stemmer (Porter 1980, "An algorithm for suffix stripping") exactly as NLTK's <c>PorterStemmer()</c> runs
/// it in its default NLTK_EXTENSIONS mode, because that is the stemmer Google's <c>rouge_score</c> uses and ROUGE
/// numbers are only comparable with the same stemmer. That mode departs from the paper in a few places, marked
/// "NLTK:" below; e.g. "ties" becomes "tie" where the paper gives "ti". Expects lower-case ASCII words.
/// </summary>
public static class PorterStemmer
{
    // NLTK: irregular forms that bypass the rules.
    private static readonly Dictionary<string, string> Irregular = new()
    {
        ["sky"] = "sky", ["skies"] = "sky", ["dying"] = "die", ["lying"] = "lie", ["tying"] = "tie", ["news"] = "news",
        ["innings"] = "inning", ["inning"] = "inning", ["outings"] = "outing", ["outing"] = "outing",
        ["cannings"] = "canning", ["canning"] = "canning", ["howe"] = "howe",
        ["proceed"] = "proceed", ["exceed"] = "exceed", ["succeed"] = "succeed",
    };

    private readonly record struct Rule(string Suffix, string Replacement, Func<string, bool> Condition);

    private static readonly Func<string, bool> PositiveMeasure = stem => Measure(stem) > 0;
    private static readonly Func<string, bool> MeasureAboveOne = stem => Measure(stem) > 1;

    private static readonly Rule[] Step1aRules =
    [
        new("sses", "ss", _ => true), new("ies", "i", _ => true), new("ss", "ss", _ => true), new("s", "", _ => true),
    ];

    // NLTK: "y" becomes "i" only after a consonant that is not the word's first letter, so "enjoy" stays.
    private static readonly Rule[] Step1cRules = [new("y", "i", stem => stem.Length > 1 && IsConsonant(stem, stem.Length - 1))];

    private static readonly Rule[] Step2Rules =
    [
        new("ational", "ate", PositiveMeasure), new("tional", "tion", PositiveMeasure), new("enci", "ence", PositiveMeasure),
        new("anci", "ance", PositiveMeasure), new("izer", "ize", PositiveMeasure),
        new("bli", "ble", PositiveMeasure), // NLTK: the paper has "abli" -> "able"
        new("alli", "al", PositiveMeasure), new("entli", "ent", PositiveMeasure), new("eli", "e", PositiveMeasure),
        new("ousli", "ous", PositiveMeasure), new("ization", "ize", PositiveMeasure), new("ation", "ate", PositiveMeasure),
        new("ator", "ate", PositiveMeasure), new("alism", "al", PositiveMeasure), new("iveness", "ive", PositiveMeasure),
        new("fulness", "ful", PositiveMeasure), new("ousness", "ous", PositiveMeasure), new("aliti", "al", PositiveMeasure),
        new("iviti", "ive", PositiveMeasure), new("biliti", "ble", PositiveMeasure),
        new("fulli", "ful", PositiveMeasure), // NLTK
        new("logi", "log", stem => Measure(stem + "l") > 0), // NLTK: the "l" counts with the stem, so "geology" -> "geolog"
    ];

    private static readonly Rule[] Step3Rules =
    [
        new("icate", "ic", PositiveMeasure), new("ative", "", PositiveMeasure), new("alize", "al", PositiveMeasure),
        new("iciti", "ic", PositiveMeasure), new("ical", "ic", PositiveMeasure), new("ful", "", PositiveMeasure),
        new("ness", "", PositiveMeasure),
    ];

    private static readonly Rule[] Step4Rules =
    [
        new("al", "", MeasureAboveOne), new("ance", "", MeasureAboveOne), new("ence", "", MeasureAboveOne),
        new("er", "", MeasureAboveOne), new("ic", "", MeasureAboveOne), new("able", "", MeasureAboveOne),
        new("ible", "", MeasureAboveOne), new("ant", "", MeasureAboveOne), new("ement", "", MeasureAboveOne),
        new("ment", "", MeasureAboveOne), new("ent", "", MeasureAboveOne),
        new("ion", "", stem => Measure(stem) > 1 && stem[^1] is 's' or 't'),
        new("ou", "", MeasureAboveOne), new("ism", "", MeasureAboveOne), new("ate", "", MeasureAboveOne),
        new("iti", "", MeasureAboveOne), new("ous", "", MeasureAboveOne), new("ive", "", MeasureAboveOne),
        new("ize", "", MeasureAboveOne),
    ];

    public static string Stem(string word)
    {
        if (Irregular.TryGetValue(word, out var irregular)) return irregular;
        if (word.Length <= 2) return word; // NLTK
        word = Step1a(word);
        word = Step1b(word);
        word = Apply(word, Step1cRules);
        word = Step2(word);
        word = Apply(word, Step3Rules);
        word = Apply(word, Step4Rules);
        word = Step5a(word);
        return Step5b(word);
    }

    private static string Step1a(string word) =>
        word.Length == 4 && word.EndsWith("ies", StringComparison.Ordinal) ? word[..^3] + "ie" // NLTK: "ties" -> "tie"
        : Apply(word, Step1aRules);

    private static string Step1b(string word)
    {
        // NLTK: "died" -> "die" but "spied" -> "spi".
        if (word.EndsWith("ied", StringComparison.Ordinal)) return word[..^3] + (word.Length == 4 ? "ie" : "i");
        // (m>0) EED -> EE; a word ending in "eed" never falls through to the "ed" rule ("feed" stays "feed").
        if (word.EndsWith("eed", StringComparison.Ordinal)) return Measure(word[..^3]) > 0 ? word[..^1] : word;

        var stem = new[] { "ed", "ing" }
            .Where(suffix => word.EndsWith(suffix, StringComparison.Ordinal) && ContainsVowel(word[..^suffix.Length]))
            .Select(suffix => word[..^suffix.Length])
            .FirstOrDefault();
        if (stem == null) return word;

        // The "e" comes back so that later steps recognise -ate, -ble and -ize.
        if (stem.EndsWith("at", StringComparison.Ordinal) || stem.EndsWith("bl", StringComparison.Ordinal) || stem.EndsWith("iz", StringComparison.Ordinal)) return stem + "e";
        if (EndsDoubleConsonant(stem)) return stem[^1] is 'l' or 's' or 'z' ? stem : stem[..^1];
        return Measure(stem) == 1 && EndsCvc(stem) ? stem + "e" : stem;
    }

    private static string Step2(string word)
    {
        // NLTK: "alli" -> "al" comes first and sends the result through step 2 again.
        if (word.EndsWith("alli", StringComparison.Ordinal) && Measure(word[..^4]) > 0) return Step2(word[..^2]);
        return Apply(word, Step2Rules);
    }

    private static string Step5a(string word)
    {
        // (m>1) E -> ; (m=1 and not *o) E -> . Both conditions are tried, unlike a rule list.
        if (!word.EndsWith('e')) return word;
        var stem = word[..^1];
        var m = Measure(stem);
        return m > 1 || (m == 1 && !EndsCvc(stem)) ? stem : word;
    }

    private static string Step5b(string word) =>
        word.EndsWith("ll", StringComparison.Ordinal) && Measure(word[..^1]) > 1 ? word[..^1] : word;

    /// <summary>The first rule whose suffix the word has decides: if its condition fails, no later rule is tried.</summary>
    private static string Apply(string word, Rule[] rules)
    {
        foreach (var rule in rules)
        {
            if (!word.EndsWith(rule.Suffix, StringComparison.Ordinal)) continue;
            var stem = word[..^rule.Suffix.Length];
            return rule.Condition(stem) ? stem + rule.Replacement : word;
        }
        return word;
    }

    /// <summary>A consonant is a letter other than a, e, i, o, u, and other than a "y" that follows a consonant.</summary>
    private static bool IsConsonant(string word, int i) => word[i] switch
    {
        'a' or 'e' or 'i' or 'o' or 'u' => false,
        'y' => i == 0 || !IsConsonant(word, i - 1),
        _ => true,
    };

    /// <summary>m in the paper's [C](VC){m}[V]: the number of vowel-to-consonant changes.</summary>
    private static int Measure(string stem)
    {
        var m = 0;
        for (var i = 1; i < stem.Length; i++)
            if (!IsConsonant(stem, i - 1) && IsConsonant(stem, i)) m++;
        return m;
    }

    private static bool ContainsVowel(string stem) => Enumerable.Range(0, stem.Length).Any(i => !IsConsonant(stem, i));

    private static bool EndsDoubleConsonant(string word) =>
        word.Length >= 2 && word[^1] == word[^2] && IsConsonant(word, word.Length - 1);

    /// <summary>
    /// *o: the word ends consonant-vowel-consonant and the last is not w, x or y ("hop", not "snow");
    /// NLTK: also a two-letter vowel-consonant word ("at"), so that short words keep their "e".
    /// </summary>
    private static bool EndsCvc(string word) =>
        (word.Length >= 3 && IsConsonant(word, word.Length - 3) && !IsConsonant(word, word.Length - 2)
            && IsConsonant(word, word.Length - 1) && word[^1] is not ('w' or 'x' or 'y'))
        || (word.Length == 2 && !IsConsonant(word, 0) && IsConsonant(word, 1));
}
