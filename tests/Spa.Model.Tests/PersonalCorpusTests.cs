using System.Text.RegularExpressions;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;
using Spa.Testing;

namespace Spa.Model.Tests;

public sealed class PersonalCorpusTests : IDisposable
{
    private static readonly string[] PrivateNames = ["Zorblax", "Quimby"];
    private static readonly Lazy<ITokenizer> Tok512 = new(() => TokenizerLoader.Load(SharedData.Tok512, 512));
    private static readonly Lazy<ITokenizer> Llama2 = new(() => TokenizerLoader.Load(SharedData.LlamaTokenizerModel, 32000));

    // Sampling is the slow part, so the tests that only read the corpus share one.
    private static readonly Lazy<IReadOnlyList<PersonalStory>> Corpus = new(() => Generate(seed: 1));

    private readonly DirectoryInfo _temp = Directory.CreateTempSubdirectory("spa-personal-tests-");

    public void Dispose() => _temp.Delete(recursive: true);

    private static IReadOnlyList<PersonalStory> Generate(int seed) =>
        PersonalCorpus.Generate(Stories260K.Model, Tok512.Value, PrivateNames, count: 5, seed: seed);

    private static bool HasWord(string text, string word) => Regex.IsMatch(text, $@"(?<!\p{{L}}){Regex.Escape(word)}(?!\p{{L}})");

    private string WriteFile(params string[] lines)
    {
        var path = Path.Combine(_temp.FullName, "corpus.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public void GeneratedStoriesCarryThePrivateNamesInPlaceOfTheBaseNames()
    {
        var stories = Corpus.Value;

        Assert.Equal(5, stories.Count);
        foreach (var story in stories)
        {
            Assert.NotEmpty(story.BaseNames);
            Assert.NotEmpty(story.PrivateSpans);
            Assert.All(story.Names, name => Assert.Contains(name, PrivateNames));
            Assert.All(story.BaseNames, name => Assert.False(HasWord(story.Text, name), $"\"{name}\" is still in: {story.Text}"));
            foreach (var span in story.PrivateSpans) Assert.Contains(story.Text[span.Start..span.End], story.Names);
            Assert.Equal(story.PrivateSpans.OrderBy(s => s.Start), story.PrivateSpans);
            Assert.All(story.PrivateSpans.Zip(story.PrivateSpans.Skip(1)), pair => Assert.True(pair.First.End <= pair.Second.Start));
            // Every occurrence of a private name is recorded, not only some.
            var occurrences = PrivateNames.Sum(name => Regex.Matches(story.Text, $@"(?<!\p{{L}}){name}(?!\p{{L}})").Count);
            Assert.Equal(occurrences, story.PrivateSpans.Count);
        }
    }

    [Fact]
    public void TheSameSeedGivesTheSameCorpusAndAnotherSeedAnother()
    {
        var again = Generate(seed: 1);
        var other = Generate(seed: 2);

        Assert.Equal(Corpus.Value.Select(s => s.Text), again.Select(s => s.Text));
        Assert.Equal(Corpus.Value.SelectMany(s => s.PrivateSpans), again.SelectMany(s => s.PrivateSpans));
        Assert.NotEqual(Corpus.Value.Select(s => s.Text), other.Select(s => s.Text));
    }

    [Fact]
    public void AModelThatNamesNobodyIsAClearError()
    {
        // One token after BOS is a story's first word ("Once", "One"), never a name.
        var error = Assert.Throws<InvalidOperationException>(() =>
            PersonalCorpus.Generate(Stories260K.Model, Tok512.Value, PrivateNames, count: 1, seed: 1, maxTokens: 1));
        Assert.Contains("only 0 of 23 sampled stories named a character", error.Message);
    }

    [Fact]
    public void DetectsListedNamesAndUnknownNamesCapitalisedMidSentence()
    {
        const string text = "Once upon a time, Lily met a frog called Zed. The frog liked Zed a lot. "
                            + "She said, \"Zed, come here!\" Mom and Mr. Brown waved at Mom. Mr. Brown smiled. Bright sun. Bright day.";

        // Lily is listed; Zed is capitalised twice mid-sentence; Brown twice after "Mr."; Mom is a family word;
        // Once, The, She and Bright only start sentences (Bright twice).
        Assert.Equal(["Lily", "Zed", "Brown"], PersonalCorpus.DetectNames(text));
        Assert.Empty(PersonalCorpus.DetectNames("There was a Gorp. It was big."));
    }

    [Fact]
    public void PersonaliseMapsNamesInOrderOfAppearanceCyclingThePrivateNames()
    {
        var story = PersonalCorpus.Personalise("Lily and Tom played. Lily's ball was red. Then Max came to Tommy.", ["Ann", "Bo"]);

        Assert.NotNull(story);
        Assert.Equal("Ann and Bo played. Ann's ball was red. Then Ann came to Bo.", story.Text);
        Assert.Equal(["Lily", "Tom", "Max", "Tommy"], story.BaseNames);
        Assert.Equal(["Ann", "Bo"], story.Names);
        Assert.Equal([new CharSpan(0, 3), new CharSpan(8, 10), new CharSpan(19, 22), new CharSpan(44, 47), new CharSpan(56, 58)], story.PrivateSpans);
        Assert.Null(PersonalCorpus.Personalise("Once upon a time, there was a dog.", ["Ann"]));
    }

    [Theory]
    [InlineData(new string[0], "at least one")]
    [InlineData(new[] { "Zor blax" }, "single word of letters")]
    [InlineData(new[] { "Zorb1ax" }, "single word of letters")]
    [InlineData(new[] { "" }, "single word of letters")]
    [InlineData(new[] { "Ann", "Ann" }, "given twice")]
    public void PrivateNamesMustBeDistinctWordsOfLetters(string[] names, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => PersonalCorpus.Personalise("Lily ran.", names));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void LoadReadsBackWhatWriteWroteAndTheJsonlTaskReadsItsText()
    {
        var path = Path.Combine(_temp.FullName, "corpus.jsonl");
        using (var writer = new StreamWriter(path)) PersonalCorpus.Write(writer, Corpus.Value);

        var loaded = PersonalCorpus.Load(path);

        Assert.Equal(Corpus.Value.Count, loaded.Count);
        foreach (var (written, read) in Corpus.Value.Zip(loaded))
        {
            Assert.Equal(written.Text, read.Text);
            Assert.Equal(written.Names, read.Names);
            Assert.Equal(written.BaseNames, read.BaseNames);
            Assert.Equal(written.PrivateSpans, read.PrivateSpans);
        }
        var task = TaskCatalog.Load("jsonl", path, tasksRoot: null);
        Assert.Equal(Corpus.Value.Select(s => s.Text), task.Examples.Select(e => e.Target));
        Assert.All(task.Examples, e => Assert.Equal("", e.Prompt));
    }

    [Theory]
    [InlineData("{\"text\": \"Ann ran.\", \"names\": [\"Ann\"], \"base_names\": [\"Lily\"], \"private_spans\": [[0, 3]]", "not valid JSON")]
    [InlineData("[1, 2]", "expected a JSON object")]
    [InlineData("{\"text\": \"Ann ran.\", \"names\": [\"Ann\"], \"private_spans\": [[0, 3]]}", "missing field \"base_names\"")]
    [InlineData("{\"text\": \"Ann ran.\", \"names\": [1], \"base_names\": [\"Lily\"], \"private_spans\": [[0, 3]]}", "\"names\" must be an array of strings")]
    [InlineData("{\"text\": \"Ann ran.\", \"names\": [\"Ann\"], \"base_names\": [\"Lily\"], \"private_spans\": [[0, 30]]}", "[0, 30] is not a [start, end] pair")]
    [InlineData("{\"text\": \"Ann ran.\", \"names\": [\"Ann\"], \"base_names\": [\"Lily\"], \"private_spans\": [[4, 7]]}", "holds \"ran\"")]
    public void AMalformedLineIsReportedWithFileAndLine(string bad, string message)
    {
        var good = "{\"text\": \"Ann ran.\", \"names\": [\"Ann\"], \"base_names\": [\"Lily\"], \"private_spans\": [[0, 3]]}";
        var path = WriteFile(good, "", bad);

        var error = Assert.Throws<InvalidDataException>(() => PersonalCorpus.Load(path));

        Assert.StartsWith($"{path}:3: ", error.Message);
        Assert.Contains(message, error.Message);
    }

    /// <summary>
    /// On the sampled stories, with both tokenizers: a token is marked exactly when its characters, found
    /// independently by decoding ever longer prefixes, overlap a private span; every span has a marked token, and a
    /// marked token's text (without its leading space) lies inside a span.
    /// </summary>
    [Theory]
    [InlineData("tok512")]
    [InlineData("llama2")]
    public void PrivatePositionsMarkTheTokensOfThePrivateNames(string tokenizerName)
    {
        var tokenizer = tokenizerName == "tok512" ? Tok512.Value : Llama2.Value;
        foreach (var story in Corpus.Value)
        {
            var (tokens, isPrivate) = PersonalCorpus.PrivatePositions(tokenizer, story.Text, story.PrivateSpans);

            Assert.Equal(tokenizer.Encode(story.Text, bos: true, eos: false), tokens);
            Assert.False(isPrivate[0]);
            var ranges = Enumerable.Range(0, tokens.Length)
                .Select(t => (Start: tokenizer.Decode(tokens[..t]).Length, End: tokenizer.Decode(tokens[..(t + 1)]).Length))
                .ToArray();
            for (var t = 1; t < tokens.Length; t++)
            {
                var (start, end) = ranges[t];
                Assert.Equal(story.PrivateSpans.Any(s => s.Overlaps(start, end)), isPrivate[t]);
                if (!isPrivate[t]) continue;
                if (story.Text[start] == ' ') start++;
                Assert.True(story.PrivateSpans.Any(s => s.Start <= start && end <= s.End),
                    $"token {t} \"{story.Text[ranges[t].Start..end]}\" reaches outside the private spans of: {story.Text}");
            }
            foreach (var span in story.PrivateSpans)
                Assert.Contains(Enumerable.Range(1, tokens.Length - 1), t => isPrivate[t] && span.Overlaps(ranges[t].Start, ranges[t].End));
        }
    }

    [Fact]
    public void ByteTokensOfAPrivateCharacterAreMarked()
    {
        // tok512 has no "ë": it is two byte tokens, the first of which decodes to nothing on its own.
        const string text = "Zoë ran to Zoë's house.";
        var spans = new[] { new CharSpan(0, 3), new CharSpan(11, 14) };
        var (tokens, isPrivate) = PersonalCorpus.PrivatePositions(Tok512.Value, text, spans);

        var marked = tokens.Where((_, t) => isPrivate[t]).ToArray();
        Assert.Equal([3 + 0xC3, 3 + 0xAB, 3 + 0xC3, 3 + 0xAB], marked.Where(id => id < 3 + 256));
        Assert.Equal("ZoëZoë", Tok512.Value.Decode(marked).Replace(" ", ""));
    }

    [Fact]
    public void MetricsCountPrivateAccuracyGateRecallPrecisionAndM()
    {
        var metrics = new PrivateTokenMetrics();
        // target, predicted, private, edge
        metrics.Add(10, 10, isPrivate: false, edge: false);
        metrics.Add(11, 12, isPrivate: true, edge: true);
        metrics.Add(13, 13, isPrivate: true, edge: true);
        metrics.Add(14, 14, isPrivate: true, edge: false);
        metrics.Add(15, 16, isPrivate: false, edge: true);
        metrics.Add(17, 17, isPrivate: false, edge: true);

        Assert.Equal(6, metrics.Positions);
        Assert.Equal(3, metrics.PrivatePositions);
        Assert.Equal(4.0 / 6, metrics.Accuracy);
        Assert.Equal(2.0 / 3, metrics.PrivateAccuracy);
        Assert.Equal(2.0 / 3, metrics.GateRecall);
        Assert.Equal(2.0 / 4, metrics.GatePrecision);
        Assert.Equal(4.0 / 6, metrics.M);
    }

    [Fact]
    public void MetricsOfASequenceAlignRowJWithTokenJPlusOne()
    {
        var metrics = new PrivateTokenMetrics();
        int[] tokens = [1, 20, 21, 22];
        bool[] isPrivate = [false, false, true, true];

        metrics.AddSequence(tokens, isPrivate, predicted: [20, 99, 22], edge: [false, true, true]);

        Assert.Equal(3, metrics.Positions);
        Assert.Equal(2, metrics.PrivatePositions);
        Assert.Equal(0.5, metrics.PrivateAccuracy);
        Assert.Equal(1.0, metrics.GateRecall);
        Assert.Equal(1.0, metrics.GatePrecision);
        Assert.Equal(2.0 / 3, metrics.M);
        Assert.Throws<ArgumentException>(() => metrics.AddSequence(tokens, isPrivate, predicted: [20, 21, 22, 23], edge: [true, true, true, true]));
    }

    [Fact]
    public void RatiosWithNothingToCountAreNaN()
    {
        var metrics = new PrivateTokenMetrics();
        metrics.Add(1, 1, isPrivate: false, edge: false);

        Assert.True(double.IsNaN(metrics.PrivateAccuracy));
        Assert.True(double.IsNaN(metrics.GateRecall));
        Assert.True(double.IsNaN(metrics.GatePrecision));
        Assert.Equal(0.0, metrics.M);
    }
}
