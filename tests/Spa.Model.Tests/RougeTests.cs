using Spa.Model.Evaluation;

namespace Spa.Model.Tests;

public sealed class RougeTests
{
    private const double Tolerance = 1e-9;

    /// <summary>
    /// The examples of Porter's paper (1980), step by step. NLTK's default mode, which rouge_score uses, gives the
    /// paper's answer for every one except "ties": its extension maps a four-letter "-ies" word to "-ie".
    /// </summary>
    [Fact]
    public void PorterStemmerGivesThePapersExamples()
    {
        (string Word, string Stem)[] examples =
        [
            ("caresses", "caress"), ("ponies", "poni"), ("ties", "tie"), ("caress", "caress"), ("cats", "cat"),
            ("feed", "feed"), ("agreed", "agre"), ("plastered", "plaster"), ("bled", "bled"), ("motoring", "motor"),
            ("sing", "sing"), ("conflated", "conflat"), ("troubled", "troubl"), ("sized", "size"), ("hopping", "hop"),
            ("tanned", "tan"), ("falling", "fall"), ("hissing", "hiss"), ("fizzed", "fizz"), ("failing", "fail"),
            ("filing", "file"), ("happy", "happi"), ("sky", "sky"), ("relational", "relat"), ("conditional", "condit"),
            ("rational", "ration"), ("valenci", "valenc"), ("hesitanci", "hesit"), ("digitizer", "digit"),
            ("conformabli", "conform"), ("radicalli", "radic"), ("differentli", "differ"), ("vileli", "vile"),
            ("analogousli", "analog"), ("vietnamization", "vietnam"), ("predication", "predic"), ("operator", "oper"),
            ("feudalism", "feudal"), ("decisiveness", "decis"), ("hopefulness", "hope"), ("callousness", "callous"),
            ("formaliti", "formal"), ("sensitiviti", "sensit"), ("sensibiliti", "sensibl"), ("triplicate", "triplic"),
            ("formative", "form"), ("formalize", "formal"), ("electriciti", "electr"), ("electrical", "electr"),
            ("hopeful", "hope"), ("goodness", "good"), ("revival", "reviv"), ("allowance", "allow"),
            ("inference", "infer"), ("airliner", "airlin"), ("gyroscopic", "gyroscop"), ("adjustable", "adjust"),
            ("defensible", "defens"), ("irritant", "irrit"), ("replacement", "replac"), ("adjustment", "adjust"),
            ("dependent", "depend"), ("adoption", "adopt"), ("homologou", "homolog"), ("communism", "commun"),
            ("activate", "activ"), ("angulariti", "angular"), ("homologous", "homolog"), ("effective", "effect"),
            ("bowdlerize", "bowdler"), ("probate", "probat"), ("rate", "rate"), ("cease", "ceas"),
            ("controll", "control"), ("roll", "roll"), ("generalizations", "gener"), ("oscillators", "oscil"),
        ];
        AssertStems(examples);
    }

    /// <summary>Where NLTK's default mode departs from the paper, worked through its rules.</summary>
    [Fact]
    public void PorterStemmerFollowsNltksExtensions()
    {
        AssertStems(
        [
            ("dying", "die"), ("skies", "sky"), ("news", "news"), ("innings", "inning"), ("proceed", "proceed"), // irregular forms
            ("died", "die"), ("spied", "spi"), // -ied: four letters keep "ie", longer words keep "i"
            ("enjoy", "enjoy"), ("fly", "fli"), // y -> i only after a consonant that is not the first letter
            ("hopefulli", "hope"), // -fulli -> -ful, then step 3 drops -ful
            ("geology", "geolog"), // -logi -> -log, its "l" counting towards the stem's measure
            ("possibli", "possibl"), // -bli -> -ble (the paper only has -abli), then step 5 drops the e
            ("is", "is"), ("as", "as"), // two letters are never stemmed
        ]);
    }

    private static void AssertStems((string Word, string Stem)[] examples)
    {
        var wrong = examples.Where(e => PorterStemmer.Stem(e.Word) != e.Stem)
            .Select(e => $"{e.Word} -> {PorterStemmer.Stem(e.Word)}, expected {e.Stem}").ToList();
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    [Fact]
    public void TokenizationLowerCasesSplitsOnAnythingButLettersAndDigitsAndStemsLongWords()
    {
        Assert.Equal(["the", "cat", "s", "mat", "isn", "t", "3", "50", "caf", "na", "ve"],
            RougeTokenizer.Tokenize("The CAT's mat -- isn't $3.50!  café naïve", useStemmer: false));
        // "cats" and "runs" have four letters and are stemmed; "was" has three and is not.
        Assert.Equal(["cat", "run", "was", "happili"], RougeTokenizer.Tokenize("Cats runs was happily", useStemmer: true));
        Assert.Empty(RougeTokenizer.Tokenize(" -- ?! ", useStemmer: true));
    }

    /// <summary>
    /// Reference "the cat sat on the mat", prediction "the cat is on the mat", six tokens each.
    /// ROUGE-1: the, cat, on, the, mat match (the twice on both sides): 5/6 both ways, F1 5/6.
    /// ROUGE-2: reference bigrams {the cat, cat sat, sat on, on the, the mat}, prediction {the cat, cat is, is on,
    /// on the, the mat}: 3 of 5 on each side, so 0.6.
    /// ROUGE-L: the LCS is "the cat on the mat", 5 tokens: 5/6.
    /// </summary>
    [Fact]
    public void HandWorkedExample()
    {
        var score = Rouge.Score("the cat sat on the mat", "the cat is on the mat", useStemmer: false);
        AssertScore(new(5.0 / 6, 5.0 / 6, 5.0 / 6), score.Rouge1);
        AssertScore(new(0.6, 0.6, 0.6), score.Rouge2);
        AssertScore(new(5.0 / 6, 5.0 / 6, 5.0 / 6), score.RougeL);
    }

    /// <summary>
    /// Reference "a b c d e", prediction "e d c b a w": every word matches (ROUGE-1 P 5/6, R 5/5, F1 2*(5/6)/(11/6) =
    /// 10/11), no bigram does, and the longest common subsequence is one word (P 1/6, R 1/5, F1 2/11).
    /// </summary>
    [Fact]
    public void RougeLCountsOrderWhereRouge1DoesNot()
    {
        var score = Rouge.Score("alpha bravo charlie delta echo", "echo delta charlie bravo alpha whiskey", useStemmer: false);
        AssertScore(new(5.0 / 6, 1, 10.0 / 11), score.Rouge1);
        AssertScore(new(0, 0, 0), score.Rouge2);
        AssertScore(new(1.0 / 6, 1.0 / 5, 2.0 / 11), score.RougeL);
    }

    /// <summary>
    /// Reference "the cat", prediction "the the the the": "the" counts at most once, as often as the reference has it.
    /// ROUGE-1 P 1/4, R 1/2, F1 2*(1/8)/(3/4) = 1/3. ROUGE-2: "the the" is not in the reference: 0. ROUGE-L: 1 token,
    /// the same as ROUGE-1.
    /// </summary>
    [Fact]
    public void RepeatedTokensAreClipped()
    {
        var score = Rouge.Score("the cat", "the the the the", useStemmer: false);
        AssertScore(new(0.25, 0.5, 1.0 / 3), score.Rouge1);
        AssertScore(new(0, 0, 0), score.Rouge2);
        AssertScore(new(0.25, 0.5, 1.0 / 3), score.RougeL);
    }

    /// <summary>
    /// Reference "The cats were running", prediction "the cat runs". Without stemming only "the" matches: P 1/3,
    /// R 1/4, F1 2/7. With stemming "cats" -> "cat", "running" -> "run", "runs" -> "run" ("were" has no suffix to
    /// strip; "the" and "cat" are too short to stem): reference [the cat were run], prediction [the cat run].
    /// ROUGE-1 and ROUGE-L: 3 matches, P 1, R 3/4, F1 6/7. ROUGE-2: only "the cat" is shared, P 1/2, R 1/3, F1 2/5.
    /// </summary>
    [Fact]
    public void StemmingMatchesInflectedForms()
    {
        var plain = Rouge.Score("The cats were running", "the cat runs", useStemmer: false);
        AssertScore(new(1.0 / 3, 0.25, 2.0 / 7), plain.Rouge1);

        var stemmed = Rouge.Score("The cats were running", "the cat runs", useStemmer: true);
        AssertScore(new(1, 0.75, 6.0 / 7), stemmed.Rouge1);
        AssertScore(new(0.5, 1.0 / 3, 0.4), stemmed.Rouge2);
        AssertScore(new(1, 0.75, 6.0 / 7), stemmed.RougeL);
    }

    [Fact]
    public void CaseAndPunctuationDoNotMatter()
    {
        var score = Rouge.Score("The cat, sat.", "the CAT sat!!", useStemmer: true);
        AssertScore(new(1, 1, 1), score.Rouge1);
        AssertScore(new(1, 1, 1), score.Rouge2);
        AssertScore(new(1, 1, 1), score.RougeL);
    }

    [Theory]
    [InlineData("", "")]
    [InlineData("the cat", "")]
    [InlineData("", "the cat")]
    [InlineData("the cat", "?!")]
    [InlineData("one", "one two")] // a single word has no bigram: ROUGE-2 is 0 while ROUGE-1 is not
    public void EmptySidesScoreZeroWithoutThrowing(string reference, string prediction)
    {
        var score = Rouge.Score(reference, prediction, useStemmer: true);
        AssertScore(new(0, 0, 0), score.Rouge2);
        if (reference != "one")
        {
            AssertScore(new(0, 0, 0), score.Rouge1);
            AssertScore(new(0, 0, 0), score.RougeL);
        }
    }

    /// <summary>
    /// rouge_score's own regression data (google-research/rouge/testdata, Apache-2.0: the first two lines of
    /// target.txt and prediction.txt) and the values its tests check, which came from the official ROUGE-1.5.5.
    /// Random letters with punctuation exercise the tokenizer; the -ing/-er/-tion endings exercise the stemmer.
    /// </summary>
    [Fact]
    public void MatchesRougeScoresRegressionValues()
    {
        const string target0 = "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n";
        const string prediction0 = "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n";
        const string target1 = "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n";
        const string prediction1 = "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n";

        var plain0 = Rouge.Score(target0, prediction0, useStemmer: false);
        AssertRounded(0.68750, 0.40741, 0.51163, plain0.Rouge1);
        AssertRounded(0.53333, 0.30769, 0.39024, plain0.Rouge2);
        AssertRounded(0.68750, 0.40741, 0.51163, plain0.RougeL);
        var plain1 = Rouge.Score(target1, prediction1, useStemmer: false);
        AssertRounded(0.65385, 0.40476, 0.50000, plain1.Rouge1);
        AssertRounded(0.48000, 0.29268, 0.36364, plain1.Rouge2);
        AssertRounded(0.65385, 0.40476, 0.50000, plain1.RougeL);

        var stemmed0 = Rouge.Score(target0, prediction0, useStemmer: true);
        AssertRounded(0.68750, 0.40741, 0.51163, stemmed0.Rouge1);
        AssertRounded(0.53333, 0.30769, 0.39024, stemmed0.Rouge2);
        var stemmed1 = Rouge.Score(target1, prediction1, useStemmer: true);
        AssertRounded(0.69231, 0.42857, 0.52941, stemmed1.Rouge1);
        AssertRounded(0.48000, 0.29268, 0.36364, stemmed1.Rouge2);
    }

    /// <summary>Mean F1 times 100: ROUGE-1 F1s of 5/6 and 1/3 average to 7/12, i.e. 58.33.</summary>
    [Fact]
    public void AggregateIsTheMeanF1TimesHundred()
    {
        var scores = RougeScores.Mean(
        [
            Rouge.Score("the cat sat on the mat", "the cat is on the mat", useStemmer: true),
            Rouge.Score("the cat", "the the the the", useStemmer: true),
        ]);
        Assert.Equal(2, scores.Count);
        Assert.Equal(100 * 7.0 / 12, scores.Rouge1, Tolerance);
        Assert.Equal(100 * 0.6 / 2, scores.Rouge2, Tolerance);
        Assert.Equal(100 * 7.0 / 12, scores.RougeL, Tolerance);
        Assert.Throws<ArgumentException>(() => RougeScores.Mean([]));
    }

    [Theory]
    [InlineData("The Coriolis effect", "coriolis effect", true)] // article and case
    [InlineData("coriolis effect", "  Coriolis   effect. ", true)] // punctuation and spacing
    [InlineData("alpha decay", "an alpha-decay", false)] // a hyphen is removed, not made a space: "alphadecay"
    [InlineData("sperm and eggs", "sperm and eggs\nQuestion: What is the next question?\nAnswer:", true)] // only the first line counts
    [InlineData("sperm and eggs", "\nsperm and eggs", false)] // an empty first line is the answer given
    [InlineData("theory", "theory", true)] // "the" inside a word stays
    [InlineData("a", "", true)] // both normalise to nothing
    [InlineData("exothermic", "endothermic", false)]
    public void ExactMatchNormalisesAsSquadDoesAndReadsOnlyTheFirstLine(string reference, string prediction, bool match)
    {
        Assert.Equal(match, ExactMatch.IsMatch(reference, prediction));
    }

    [Fact]
    public void NormalisationRemovesCaseArticlesPunctuationAndExtraSpace()
    {
        Assert.Equal("cat sat on mat", ExactMatch.Normalize("  The cat, sat on A mat!  "));
        Assert.Equal("theory of everything", ExactMatch.Normalize("The theory of (everything)"));
        Assert.Equal("first", ExactMatch.FirstLine("first\nsecond"));
    }

    private static void AssertScore(RougeScore expected, RougeScore actual)
    {
        Assert.Equal(expected.Precision, actual.Precision, Tolerance);
        Assert.Equal(expected.Recall, actual.Recall, Tolerance);
        Assert.Equal(expected.F1, actual.F1, Tolerance);
    }

    private static void AssertRounded(double precision, double recall, double f1, RougeScore actual)
    {
        Assert.Equal(precision, Math.Round(actual.Precision, 5));
        Assert.Equal(recall, Math.Round(actual.Recall, 5));
        Assert.Equal(f1, Math.Round(actual.F1, 5));
    }
}
