using System.Globalization;
using System.Text.Json;
using Spa.Model.Tasks;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// One small personal corpus and one ladder plugin trained for mode spa, made once for all of
/// <see cref="PluginCommandTests"/> (the slow part: sampling stories and training).
/// </summary>
public sealed class PluginCommandFixture : IAsyncLifetime
{
    // Seeds tried in turn until the corpus has stories in every split (stories split by a hash of their text, so a
    // corpus this small may by chance have none in the test split; seed 1 has 8 / 1 / 3 with stories260K).
    private static readonly int[] CorpusSeeds = [1, 6, 7, 5, 8];

    public TempDir Temp { get; } = new();

    public string Corpus => Temp["corpus.jsonl"];
    public string PluginDir => Temp["spa-plugin"];

    /// <summary>The run of <c>spa train</c> that made <see cref="PluginDir"/>.</summary>
    public SpaResult Training { get; private set; } = null!;

    public static string[] WithModel(params string[] args) => [.. args, "--model", SharedData.Stories260K];

    public async Task InitializeAsync()
    {
        SpaResult? data = null;
        foreach (var seed in CorpusSeeds)
        {
            data = await Spa.RunAsync(WithModel("data", "personal", "--names", "Zorblax,Quimby", "--count", "12", "--max-tokens", "120",
                "--seed", seed.ToString(CultureInfo.InvariantCulture), "--out", Corpus, "--force"));
            Expect.Success(data);
            var splits = File.ReadLines(Corpus).Select(line => SplitFractions.Default.Assign(StoryText(line))).ToList();
            if (splits.Contains(TaskSplit.Train) && splits.Contains(TaskSplit.Validation) && splits.Contains(TaskSplit.Test)) break;
            data = null;
        }
        Assert.True(data is not null, $"no corpus seed in {string.Join(",", CorpusSeeds)} gave stories in all three splits");

        Training = await Spa.RunAsync(WithModel("train", "--task", "personal", "--data", Corpus, "--kind", "ladder", "--mode", "spa",
            "--out", PluginDir, "--epochs", "1", "--seed", "1"));
        Expect.Success(Training);
    }

    public Task DisposeAsync()
    {
        Temp.Dispose();
        return Task.CompletedTask;
    }

    public static string StoryText(string jsonLine)
    {
        using var story = JsonDocument.Parse(jsonLine);
        return story.RootElement.GetProperty("text").GetString()!;
    }
}

/// <summary><c>spa train</c>, <c>spa eval</c> and <c>spa sweep-tau</c> on stories260K with a personal corpus.</summary>
public sealed class PluginCommandTests(PluginCommandFixture fixture) : IClassFixture<PluginCommandFixture>
{
    private static string[] WithModel(params string[] args) => PluginCommandFixture.WithModel(args);

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    // ---------------------------------------------------------------- train

    [Fact]
    public void TrainWritesThePluginAndItsCheckpointQuietly()
    {
        var run = fixture.Training;

        Assert.True(run.Stdout.Length == 0, "train should print nothing on stdout\n" + run);
        Assert.True(run.StderrLines.Length > 0 && run.StderrLines[^1].Contains("plugin written", StringComparison.Ordinal),
            "the last line on stderr should say the plugin was written\n" + run);
        Assert.Contains(fixture.PluginDir, run.StderrLines[^1]);
        foreach (var file in new[] { "plugin.json", "plugin.safetensors", "trainer-state.json" })
            Assert.True(File.Exists(Path.Combine(fixture.PluginDir, file)), $"{file} is missing\n" + run);
        Assert.Empty(Directory.GetFiles(fixture.PluginDir, "*.tmp"));
        Expect.NoStackTrace(run);

        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(fixture.PluginDir, "plugin.json")));
        Assert.Equal("ladder", manifest.RootElement.GetProperty("kind").GetString());
        Assert.Equal("spa", manifest.RootElement.GetProperty("mode").GetString());
        Assert.Equal(1, manifest.RootElement.GetProperty("training").GetProperty("epochs").GetInt32());

        // The gate reads n and the token, learnt word labels, and its tau was set on the held-out stories to the default
        // share of parallel's quality: the tau stored is the one that reached it there, and the run says so.
        var gate = manifest.RootElement.GetProperty("gate");
        Assert.Equal("hidden-and-token", gate.GetProperty("input").GetString());
        Assert.Equal("word", gate.GetProperty("label").GetString());
        var calibration = gate.GetProperty("calibration");
        Assert.Equal("quality", calibration.GetProperty("target").GetString());
        Assert.Equal(0.995, calibration.GetProperty("value").GetDouble());
        Assert.True(calibration.GetProperty("positions").GetInt64() > 0);
        Assert.Contains(run.StderrLines, line => line.StartsWith($"tau {gate.GetProperty("tau").GetDouble().ToString("0.####", CultureInfo.InvariantCulture)} set on", StringComparison.Ordinal)
            && line.Contains($"M {calibration.GetProperty("m").GetDouble().ToString("F3", CultureInfo.InvariantCulture)}", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TrainSetsTauToARoundTripBudgetOrKeepsAFixedOne()
    {
        using var temp = new TempDir();
        string[] Train(string directory, params string[] threshold) =>
            WithModel(["train", "--task", "personal", "--data", fixture.Corpus, "--mode", "spa", "--out", directory, "--epochs", "1", "--seed", "1", .. threshold]);

        var budgeted = await Spa.RunAsync(Train(temp["budget"], "--m-budget", "0.2"));
        var fixedTau = await Spa.RunAsync(Train(temp["fixed"], "--tau", "0.3"));

        Expect.Success(budgeted);
        Expect.Success(fixedTau);
        using var budget = JsonDocument.Parse(File.ReadAllText(Path.Combine(temp["budget"], "plugin.json")));
        var calibration = budget.RootElement.GetProperty("gate").GetProperty("calibration");
        Assert.Equal("m-budget", calibration.GetProperty("target").GetString());
        Assert.True(calibration.GetProperty("m").GetDouble() <= 0.2, calibration.ToString());
        using var kept = JsonDocument.Parse(File.ReadAllText(Path.Combine(temp["fixed"], "plugin.json")));
        Assert.Equal(0.3, kept.RootElement.GetProperty("gate").GetProperty("tau").GetDouble());
        Assert.False(kept.RootElement.GetProperty("gate").TryGetProperty("calibration", out _));
        Assert.DoesNotContain(fixedTau.StderrLines, line => line.Contains("set on", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TrainRefusesAnExistingPluginUnlessResumedOrForced()
    {
        using var temp = new TempDir();
        var directory = temp["plugin"];
        CopyDirectory(fixture.PluginDir, directory);
        var before = File.ReadAllBytes(Path.Combine(directory, "plugin.safetensors"));
        string[] Train(int epochs, params string[] more) =>
            WithModel(["train", "--task", "personal", "--data", fixture.Corpus, "--kind", "ladder", "--mode", "spa", "--out", directory,
                "--epochs", epochs.ToString(CultureInfo.InvariantCulture), "--seed", "1", .. more]);

        var refused = await Spa.RunAsync(Train(1));

        Expect.OneLineError(refused, "--resume", exitCode: 2);
        Assert.Contains("--force", refused.Stderr);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(directory, "plugin.safetensors")));

        // Resuming a run that already finished its epochs has nothing to do, and keeps the plugin as it was.
        var resumed = await Spa.RunAsync(Train(1, "--resume"));

        Expect.Success(resumed);
        Assert.Equal("", resumed.Stdout);
        Expect.NoStackTrace(resumed);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(directory, "plugin.safetensors")));

        // Resuming with more epochs trains the rest and writes the plugin again.
        var continued = await Spa.RunAsync(Train(2, "--resume"));

        Expect.Success(continued);
        Assert.Contains("plugin written", continued.StderrLines[^1]);
        using (var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "plugin.json"))))
            Assert.Equal(2, manifest.RootElement.GetProperty("training").GetProperty("epochs").GetInt32());

        var forced = await Spa.RunAsync(Train(1, "--force"));

        Expect.Success(forced);
        Assert.Contains("plugin written", forced.StderrLines[^1]);
    }

    [Fact]
    public async Task TrainWorksOnACorpusWithoutAValidationSplit()
    {
        using var temp = new TempDir();
        var corpus = temp["no-validation.jsonl"];
        File.WriteAllLines(corpus, File.ReadLines(fixture.Corpus)
            .Where(line => SplitFractions.Default.Assign(PluginCommandFixture.StoryText(line)) != TaskSplit.Validation));

        var run = await Spa.RunAsync(WithModel("train", "--task", "personal", "--data", corpus, "--kind", "ladder", "--mode", "spa",
            "--out", temp["plugin"], "--epochs", "1"));

        Expect.Success(run);
        Expect.NoStackTrace(run);
        Assert.Contains("plugin written", run.StderrLines[^1]);
        Assert.True(File.Exists(Path.Combine(temp["plugin"], "plugin.json")) && File.Exists(Path.Combine(temp["plugin"], "plugin.safetensors")), run.ToString());
        Assert.Empty(Directory.GetFiles(temp["plugin"], "*.tmp"));
    }

    // ---------------------------------------------------------------- eval

    [Fact]
    public async Task EvalPersonalWritesOneRowPerModeWithEveryField()
    {
        using var temp = new TempDir();
        var json = temp["rows.json"];

        var run = await Spa.RunAsync(WithModel("eval", "--task", "personal", "--data", fixture.Corpus, "--plugin", fixture.PluginDir,
            "--modes", "base,parallel,spa,spa@m<=0.3", "--json", json));

        Expect.Success(run);
        Expect.NoStackTrace(run);
        var table = run.Stdout.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n');
        Assert.True(table[0].StartsWith("| task | mode |", StringComparison.Ordinal), "stdout should open with the table header\n" + run);
        Assert.StartsWith("|---|", table[1]);
        Assert.Equal(2 + 4, table.Length);
        Assert.Contains(table, line => line.StartsWith("| personal | spa@m<=0.3 |", StringComparison.Ordinal));

        var rows = ReadRows(json);
        Assert.Equal(new[] { "base", "parallel", "spa", "spa@m<=0.3" }, rows.Select(r => r.GetProperty("mode").GetString() ?? "").ToArray());
        foreach (var row in rows)
        {
            foreach (var field in RequiredFields)
                Assert.True(row.TryGetProperty(field, out _), $"row {row} lacks \"{field}\"");
            Assert.Equal("personal", row.GetProperty("task").GetString());
            Assert.Equal(Number(row, "score"), Number(row, "private_token_accuracy"));
            Null(row, "rougeL");
            // Teacher-forced, M is the share of the counted positions at which the device was asked: a whole number of them.
            double asked = Number(row, "m") * Number(row, "tokens");
            Assert.Equal(Math.Round(asked), asked, 6);
        }

        var baseRow = rows[0];
        Null(baseRow, "kind");
        Assert.Equal(0, Number(baseRow, "m"));
        Null(baseRow, "bytes_up_per_token");
        Null(baseRow, "bytes_down_per_token");

        foreach (var row in rows.Skip(1))
        {
            Assert.Equal("ladder", row.GetProperty("kind").GetString());
            // Bytes per token are M round trips of what one round trip of this plugin sends.
            double m = Number(row, "m");
            if (m == 0) continue;
            Assert.Equal(1536 * m, Number(row, "bytes_up_per_token"), 6);
            Assert.Equal(256 * m, Number(row, "bytes_down_per_token"), 6);
        }

        // stories260K, taps at the edge in fp32: 6 taps of 64 values up, out (64 values) down, every token.
        var parallel = rows[1];
        Assert.Equal(1.0, Number(parallel, "m"));
        Assert.Equal(1536, Number(parallel, "bytes_up_per_token"));
        Assert.Equal(256, Number(parallel, "bytes_down_per_token"));

        Assert.True(Number(rows[3], "m") <= 0.3, $"spa@m<=0.3 spent more than its budget: {rows[3]}");
    }

    [Fact]
    public async Task EvalGenerationTaskScoresTheBase()
    {
        using var temp = new TempDir();
        var json = temp["rows.json"];

        var run = await Spa.RunAsync(WithModel("eval", "--task", "sciq", "--modes", "base", "--limit", "3", "--beams", "1", "--json", json));

        Expect.Success(run);
        Assert.Contains("| task | mode |", run.Stdout);
        var row = Assert.Single(ReadRows(json));
        foreach (var field in RequiredFields)
            Assert.True(row.TryGetProperty(field, out _), $"row {row} lacks \"{field}\"");
        Assert.Equal("sciq", row.GetProperty("task").GetString());
        Assert.Equal("base", row.GetProperty("mode").GetString());
        Assert.Equal(Number(row, "exact_match"), Number(row, "score")); // SciQ is scored by exact match
        // The longest common subsequence is never longer than the shared unigrams, nor are shared bigrams more.
        Assert.True(Number(row, "rougeL") <= Number(row, "rouge1") && Number(row, "rouge2") <= Number(row, "rouge1"), row.ToString());
        Assert.Equal(0, Number(row, "m"));
        Null(row, "kind");
        Null(row, "private_token_accuracy");
        Null(row, "bytes_up_per_token");
        Null(row, "bytes_down_per_token");
    }

    // ---------------------------------------------------------------- sweep-tau

    [Fact]
    public async Task SweepTauTracesFromParallelToBase()
    {
        using var temp = new TempDir();
        var csv = temp["curve.csv"];
        var png = temp["curve.png"];

        var run = await Spa.RunAsync(WithModel("sweep-tau", "--task", "personal", "--data", fixture.Corpus, "--plugin", fixture.PluginDir,
            "--taus", "0,1", "--limit", "5", "--csv", csv, "--png", png));

        Expect.Success(run);
        Expect.NoStackTrace(run);
        var lines = File.ReadAllLines(csv);
        Assert.Equal(3, lines.Length);
        var header = lines[0].Split(',');
        int tauColumn = Array.IndexOf(header, "tau"), mColumn = Array.IndexOf(header, "m");
        Assert.True(tauColumn >= 0 && mColumn >= 0, "the CSV header should name tau and m: " + lines[0]);
        var points = lines[1..].Select(line => line.Split(','))
            .ToDictionary(cells => double.Parse(cells[tauColumn], CultureInfo.InvariantCulture), cells => double.Parse(cells[mColumn], CultureInfo.InvariantCulture));
        Assert.Equal(1.0, points[0.0]);
        Assert.Equal(0.0, points[1.0]);

        var bytes = File.ReadAllBytes(png);
        Assert.True(bytes.Length > 8 && bytes[..4].SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47 }), "the plot is not a PNG file");
    }

    // ---------------------------------------------------------------- errors

    [Theory]
    [InlineData("unknown plugin kind 'banana'", 2, "train", "--task", "personal", "--data", "{corpus}", "--kind", "banana", "--out", "{temp}/out")]
    [InlineData("runs in mode 'parallel'", 2, "train", "--task", "personal", "--data", "{corpus}", "--kind", "lora", "--mode", "spa", "--out", "{temp}/out")]
    [InlineData("unknown task 'nosuchtask'", 2, "train", "--task", "nosuchtask", "--out", "{temp}/out")]
    [InlineData("give one of --tau, --target-quality and --m-budget", 2, "train", "--task", "personal", "--data", "{corpus}", "--out", "{temp}/out", "--tau", "0.3", "--m-budget", "0.2")]
    [InlineData("--target-quality is a share", 2, "train", "--task", "personal", "--data", "{corpus}", "--out", "{temp}/out", "--target-quality", "98")]
    [InlineData("unknown gate input 'tokens'", 2, "train", "--task", "personal", "--data", "{corpus}", "--out", "{temp}/out", "--gate-input", "tokens")]
    [InlineData("must be a number in [0, 1]", 2, "eval", "--task", "personal", "--data", "{corpus}", "--plugin", "{plugin}", "--modes", "spa@m<=2")]
    [InlineData("is not a plugin", 1, "eval", "--task", "personal", "--data", "{corpus}", "--plugin", "{temp}/missing", "--modes", "base,spa")]
    [InlineData("needs --data", 2, "eval", "--task", "personal", "--modes", "base")]
    public async Task MistakesAreOneLine(string phrase, int exitCode, params string[] args)
    {
        using var temp = new TempDir();
        var expanded = args.Select(a => a.Replace("{corpus}", fixture.Corpus).Replace("{plugin}", fixture.PluginDir).Replace("{temp}", temp.Path)).ToArray();

        var run = await Spa.RunAsync(WithModel(expanded));

        Expect.OneLineError(run, phrase, exitCode);
        Assert.False(Directory.Exists(temp["out"]), "a failed train should not create its --out directory\n" + run);
    }

    // ---------------------------------------------------------------- helpers

    private static readonly string[] RequiredFields =
        ["task", "mode", "kind", "score", "rougeL", "m", "bytes_up_per_token", "bytes_down_per_token", "private_token_accuracy"];

    private static List<JsonElement> ReadRows(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.GetProperty("rows").EnumerateArray().Select(r => r.Clone()).ToList();
    }

    private static double Number(JsonElement row, string field)
    {
        Assert.True(row.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.Number, $"\"{field}\" should be a number in {row}");
        return value.GetDouble();
    }

    private static void Null(JsonElement row, string field) =>
        Assert.True(row.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.Null, $"\"{field}\" should be null in {row}");
}
