using Spa.Model.Tasks;
using Spa.Model.Tokenizers;
using Spa.Testing;

namespace Spa.Model.Tests;

public sealed class TaskTests : IDisposable
{
    private static readonly Lazy<ITokenizer> Tok512 = new(() => TokenizerLoader.Load(SharedData.Tok512, 512));
    private static readonly Lazy<ITokenizer> Llama2 = new(() => TokenizerLoader.Load(SharedData.LlamaTokenizerModel, 32000));

    private readonly DirectoryInfo _temp = Directory.CreateTempSubdirectory("spa-task-tests-");

    public void Dispose() => _temp.Delete(recursive: true);

    private static TaskDataset Load(string name) => TaskCatalog.Load(name, dataFile: null, tasksRoot: SharedData.Tasks);

    private string WriteFile(string name, params string[] lines)
    {
        var path = Path.Combine(_temp.FullName, name);
        File.WriteAllLines(path, lines);
        return path;
    }

    public static TheoryData<string> SharedTasks => new() { "xsum", "cnndm", "coqa", "sciq" };

    [Theory]
    [InlineData("xsum", 1000)]
    [InlineData("cnndm", 250)]
    [InlineData("coqa", 75)]
    [InlineData("sciq", 11679 + 1000)]
    public void EveryTaskLoadsEveryRowOfItsFiles(string name, int rows)
    {
        var data = Load(name);
        Assert.Equal(name, data.Name);
        Assert.Equal(rows, data.Examples.Count);
        Assert.Equal(rows, data.Examples.Select(e => e.Id).Distinct().Count());
    }

    [Fact]
    public void TheCatalogListsEveryTask() => Assert.Equal(["xsum", "cnndm", "coqa", "sciq", "jsonl"], TaskCatalog.Names);

    [Theory]
    [MemberData(nameof(SharedTasks))]
    public void SplitsAreDeterministicAndDisjoint(string name)
    {
        var first = Load(name);
        var second = Load(name);
        var seen = new HashSet<string>();
        foreach (var split in Enum.GetValues<TaskSplit>())
        {
            var ids = first.Split(split).Select(e => e.Id).ToList();
            Assert.Equal(ids, second.Split(split).Select(e => e.Id));
            Assert.All(ids, id => Assert.True(seen.Add(id), $"{id} is in two splits"));
        }
        Assert.Equal(first.Examples.Count, seen.Count);
    }

    /// <summary>Each fraction lies within three binomial standard deviations of the one asked for.</summary>
    [Theory]
    [InlineData("xsum", 0.8, 0.1, 0.1)]
    [InlineData("cnndm", 0.8, 0.1, 0.1)]
    [InlineData("coqa", 0.8, 0.1, 0.1)]
    public void SplitFractionsAreRoughlyAsSpecified(string name, double train, double validation, double test)
    {
        var data = Load(name);
        AssertFraction(data.Split(TaskSplit.Train).Count, data.Examples.Count, train);
        AssertFraction(data.Split(TaskSplit.Validation).Count, data.Examples.Count, validation);
        AssertFraction(data.Split(TaskSplit.Test).Count, data.Examples.Count, test);
    }

    [Fact]
    public void SciqSplitsItsTrainFileNinetyTenAndKeepsItsTestFileForTest()
    {
        var data = Load("sciq");
        var test = data.Split(TaskSplit.Test);
        Assert.Equal(1000, test.Count);
        Assert.All(test, e => Assert.StartsWith("sciq_test_1000.jsonl:", e.Id));
        Assert.Equal(11679, data.Split(TaskSplit.Train).Count + data.Split(TaskSplit.Validation).Count);
        AssertFraction(data.Split(TaskSplit.Validation).Count, 11679, 0.1);
    }

    private static void AssertFraction(int count, int total, double expected)
    {
        var tolerance = 3 * Math.Sqrt(expected * (1 - expected) / total);
        var actual = (double)count / total;
        Assert.True(Math.Abs(actual - expected) <= tolerance, $"fraction {actual:F3}, expected {expected} ± {tolerance:F3}");
    }

    /// <summary>The value Python gives: (int.from_bytes(hashlib.sha256(b"0").digest()[:8], "big") >> 11) / 2**53.</summary>
    [Fact]
    public void SplitHashIsTheDocumentedFormula()
    {
        Assert.Equal(0.374708855291631, SplitFractions.UnitInterval("0"));
        Assert.Equal(0.3967770201298695, SplitFractions.UnitInterval("dm-test-008aa71f64621995d749aff42be822b1b6ca7bc9"));
        Assert.Equal(TaskSplit.Train, SplitFractions.Default.Assign("0"));
    }

    [Fact]
    public void AnExampleKeepsItsSplitWhenRowsAreAddedAndReordered()
    {
        var rows = Enumerable.Range(0, 200).Select(i => $$"""{"prompt": "Q{{i}}:", "completion": " A{{i}}"}""").ToArray();
        var before = TaskCatalog.Load("jsonl", WriteFile("before.jsonl", rows), tasksRoot: null);
        var added = Enumerable.Range(200, 50).Select(i => $$"""{"prompt": "Q{{i}}:", "completion": " A{{i}}"}""");
        var after = TaskCatalog.Load("jsonl", WriteFile("after.jsonl", [.. added, .. Enumerable.Reverse(rows)]), tasksRoot: null);

        var splitAfter = after.Examples.ToDictionary(e => e.Prompt, e => e.Split);
        Assert.All(before.Examples, e => Assert.Equal(e.Split, splitAfter[e.Prompt]));
        Assert.Equal(3, before.Examples.Select(e => e.Split).Distinct().Count());
    }

    [Fact]
    public void PromptsFollowTheDocumentedFormats()
    {
        var xsum = Load("xsum").Examples[0];
        Assert.Equal("0", xsum.Id);
        Assert.StartsWith("Document: Prison Link Cymru had 1,099 referrals", xsum.Prompt);
        Assert.EndsWith("affordable homes in the next five years.\nSummary:", xsum.Prompt);
        Assert.Equal(" There is a \"chronic\" need for more housing for prison leavers in Wales, according to a charity.", xsum.Target);

        var cnndm = Load("cnndm").Examples[0];
        Assert.Equal("dm-test-008aa71f64621995d749aff42be822b1b6ca7bc9", cnndm.Id);
        Assert.StartsWith("Article: Gary Locke will be confirmed as Kilmarnock’s permanent manager", cnndm.Prompt);
        Assert.EndsWith("\nHighlights:", cnndm.Prompt);
        Assert.StartsWith(" Gary Locke will be confirmed as Kilmarnock boss on Friday.", cnndm.Target);

        // The third turn of the first story: two earlier turns in the history.
        var coqa = Load("coqa").Examples[2];
        Assert.Equal("3zotghdk5ibi9cex97fepx7jetpso7#3", coqa.Id);
        Assert.StartsWith("Story: The Vatican Apostolic Library (), more commonly called the Vatican Library", coqa.Prompt);
        Assert.EndsWith("""
            though some are very significant.
            Q: When was the Vat formally opened?
            A: It was formally established in 1475
            Q: what is the library for?
            A: research
            Q: for what subjects?
            A:
            """.ReplaceLineEndings("\n"), coqa.Prompt);
        Assert.Equal(" history, and law", coqa.Target);

        var sciq = Load("sciq").Examples[0];
        Assert.Equal("sciq_train_11679.jsonl:1", sciq.Id);
        Assert.Equal("Question: What type of organism is commonly used in preparation of foods such as cheese and yogurt?\nAnswer:", sciq.Prompt);
        Assert.Equal(" mesophilic organisms", sciq.Target);
    }

    [Fact]
    public void UserJsonlReadsPromptCompletionAndTextRows()
    {
        var path = WriteFile("mine.jsonl",
            """{"prompt": "Translate: chat\nFrench:", "completion": " cat", "source": "ignored"}""",
            "",
            """{"text": "Once upon a time there was a cat.", "meta": {"ignored": true}}""");
        var data = TaskCatalog.Load("jsonl", path, tasksRoot: null);

        Assert.Equal(2, data.Examples.Count);
        Assert.Equal(("mine.jsonl:1", "Translate: chat\nFrench:", " cat"), (data.Examples[0].Id, data.Examples[0].Prompt, data.Examples[0].Target));
        Assert.Equal(("mine.jsonl:3", "", "Once upon a time there was a cat."), (data.Examples[1].Id, data.Examples[1].Prompt, data.Examples[1].Target));
    }

    [Theory]
    [InlineData("{\"prompt\": \"p\", ", "not valid JSON")]
    [InlineData("[1, 2]", "expected a JSON object, found an array")]
    [InlineData("{\"prompt\": \"p\"}", "missing field \"completion\"")]
    [InlineData("{\"prompt\": 1, \"completion\": \"c\"}", "field \"prompt\" must be a string, not a number")]
    [InlineData("{\"text\": null}", "field \"text\" must be a string, not null")]
    [InlineData("{\"other\": \"x\"}", "expected \"prompt\" and \"completion\", or \"text\"")]
    public void AMalformedLineIsReportedWithFileAndLine(string line, string problem)
    {
        var path = WriteFile("bad.jsonl", """{"text": "fine"}""", "", line);
        var error = Assert.Throws<InvalidDataException>(() => TaskCatalog.Load("jsonl", path, tasksRoot: null));
        Assert.StartsWith($"{path}:3: ", error.Message);
        Assert.Contains(problem, error.Message);
    }

    [Fact]
    public void ABuiltInTaskReadsAnExplicitFileAndChecksItsIds()
    {
        var good = WriteFile("xsum.jsonl",
            """{"idx": 7, "document": "A cat sat.", "summary": "Cat sits."}""",
            """{"idx": "eight", "document": "A dog ran.", "summary": "Dog runs."}""");
        var data = TaskCatalog.Load("xsum", good, tasksRoot: null);
        Assert.Equal(["7", "eight"], data.Examples.Select(e => e.Id));
        Assert.Equal("Document: A dog ran.\nSummary:", data.Examples[1].Prompt);

        var repeated = WriteFile("repeated.jsonl",
            """{"idx": 7, "document": "A cat sat.", "summary": "Cat sits."}""",
            """{"idx": 7, "document": "A dog ran.", "summary": "Dog runs."}""");
        var error = Assert.Throws<InvalidDataException>(() => TaskCatalog.Load("xsum", repeated, tasksRoot: null));
        Assert.Equal($"{repeated}:2: id \"7\" repeats line 1", error.Message);

        var badHistory = WriteFile("coqa.jsonl",
            """{"story_id": "s", "turn_id": 2, "story": "S.", "history": [["q", "a"], ["q only"]], "question": "q2", "answer": "a2"}""");
        error = Assert.Throws<InvalidDataException>(() => TaskCatalog.Load("coqa", badHistory, tasksRoot: null));
        Assert.Equal($"{badHistory}:1: \"history\"[1] must be a [string, string] pair", error.Message);
    }

    [Fact]
    public void LoadingExplainsWhatIsMissing()
    {
        Assert.Contains("xsum, cnndm, coqa, sciq, jsonl", Assert.Throws<ArgumentException>(() => TaskCatalog.Load("squad", null, SharedData.Tasks)).Message);
        Assert.Contains("give a JSONL file", Assert.Throws<ArgumentException>(() => TaskCatalog.Load("jsonl", null, SharedData.Tasks)).Message);
        Assert.Contains("needs the tasks folder", Assert.Throws<ArgumentException>(() => TaskCatalog.Load("xsum", null, null)).Message);
        Assert.Throws<FileNotFoundException>(() => TaskCatalog.Load("xsum", null, _temp.FullName));
        var empty = WriteFile("empty.jsonl", "", "  ");
        Assert.Equal($"{empty}: no examples", Assert.Throws<InvalidDataException>(() => TaskCatalog.Load("jsonl", empty, null)).Message);
    }

    public static TheoryData<string, string, string> TasksWithSuffixes()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var tokenizer in new[] { "tok512", "llama2" })
        {
            data.Add(tokenizer, "xsum", "\nSummary:");
            data.Add(tokenizer, "cnndm", "\nHighlights:");
            data.Add(tokenizer, "coqa", "\nA:");
            data.Add(tokenizer, "sciq", "\nAnswer:");
        }
        return data;
    }

    /// <summary>
    /// With 512 positions most documents are too long. Whatever the length: the prompt starts with BOS and ends with
    /// the untruncated prompt's own last tokens (the instruction suffix among them), the target is the text's real
    /// continuation cut to the budget, and the prompt leaves the whole target budget free. That the target is what
    /// follows the prompt's own tokens also shows that no token spans the boundary.
    /// </summary>
    [Theory]
    [MemberData(nameof(TasksWithSuffixes))]
    public void TruncationKeepsBosTheSuffixAndTheTargetWithinTheContext(string tokenizer, string name, string suffix)
    {
        const int context = 512, maxTarget = 64;
        var tok = tokenizer == "tok512" ? Tok512.Value : Llama2.Value;
        var truncated = 0;
        foreach (var example in Load(name).Split(TaskSplit.Test))
        {
            var (prompt, target) = TokenizedExample.Tokenize(tok, example, context, maxTarget);
            var fullPrompt = tok.Encode(example.Prompt, bos: true, eos: false);
            var fullTarget = tok.Encode(example.Prompt + example.Target, bos: true, eos: true).Skip(fullPrompt.Count).ToArray();

            Assert.Equal(tok.BosId, prompt[0]);
            Assert.True(prompt.Length + maxTarget <= context, $"{example.Id}: {prompt.Length} prompt tokens");
            Assert.Equal(fullPrompt.TakeLast(prompt.Length - 1), prompt.Skip(1));
            Assert.EndsWith(suffix, tok.Decode(prompt));
            Assert.Equal(fullTarget.Take(maxTarget), target);
            if (prompt.Length < fullPrompt.Count) truncated++;
        }
        if (name != "sciq") Assert.True(truncated > 0, "no prompt needed truncation: the test proves nothing");
    }

    [Fact]
    public void AShortExampleIsExactlyTheTokensOfItsText()
    {
        var tok = Tok512.Value;
        var example = Load("sciq").Examples[0];
        var (prompt, target) = TokenizedExample.Tokenize(tok, example, 512, 64);
        Assert.Equal(tok.Encode(example.Prompt + example.Target, bos: true, eos: true), [.. prompt, .. target]);
        Assert.Equal(tok.Encode(example.Prompt, bos: true, eos: false), prompt);
        Assert.Equal(tok.EosId, target[^1]);
        Assert.Equal(example.Target, tok.Decode(target));
    }

    [Fact]
    public void ALongTargetIsCutAndALanguageModellingRowHasOnlyBosAsPrompt()
    {
        var tok = Tok512.Value;
        var (_, target) = TokenizedExample.Tokenize(tok, Load("cnndm").Examples[0], 512, 8);
        Assert.Equal(8, target.Length);
        Assert.DoesNotContain(tok.EosId, target);

        var text = new TaskExample("t", "", "Once upon a time", TaskSplit.Train);
        var (prompt, story) = TokenizedExample.Tokenize(tok, text, 512, 64);
        Assert.Equal([tok.BosId], prompt);
        Assert.Equal([1, 403, 407, 261, 378, 2], [.. prompt, .. story]);
    }

    [Fact]
    public void TheTargetBudgetMustLeaveRoomForBos()
    {
        var example = new TaskExample("t", "Question: why?\nAnswer:", " because", TaskSplit.Test);
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenizedExample.Tokenize(Tok512.Value, example, 64, 64));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenizedExample.Tokenize(Tok512.Value, example, 64, 0));
        // One position is left: BOS alone, the prompt's text is gone but the target is whole.
        var tok = Tok512.Value;
        var (prompt, target) = TokenizedExample.Tokenize(tok, example, 64, 63);
        Assert.Equal([tok.BosId], prompt);
        Assert.Equal(tok.Encode(example.Prompt + example.Target, bos: true, eos: true).Skip(tok.Encode(example.Prompt, bos: true, eos: false).Count), target);
    }
}
