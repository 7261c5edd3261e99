using System.Text.Json;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary><c>spa data personal</c>: the user's corpus with private names.</summary>
public sealed class DataCommandTests
{
    private static string[] Personal(string output, params string[] more) =>
        ["data", "personal", "--model", SharedData.Stories260K, "--names", "Zorblax,Quimby", "--count", "3", "--out", output, .. more];

    [Fact]
    public async Task PersonalWritesACorpusWhoseSpansHoldTheNames()
    {
        using var temp = new TempDir();
        var output = temp["corpus.jsonl"];

        var run = await Spa.RunAsync(Personal(output, "--seed", "7"));

        Expect.Success(run);
        Assert.Equal("", run.Stdout);
        Assert.False(File.Exists(output + ".tmp"), "the temporary file was left behind\n" + run);
        var lines = File.ReadAllLines(output);
        Assert.Equal(3, lines.Length);
        foreach (var line in lines)
        {
            using var row = JsonDocument.Parse(line);
            var text = row.RootElement.GetProperty("text").GetString()!;
            var names = row.RootElement.GetProperty("names").EnumerateArray().Select(n => n.GetString()).ToList();
            Assert.NotEmpty(names);
            Assert.All(names, n => Assert.Contains(n, new[] { "Zorblax", "Quimby" }));
            var spans = row.RootElement.GetProperty("private_spans").EnumerateArray().ToList();
            Assert.NotEmpty(spans);
            Assert.All(spans, span => Assert.Contains(text[span[0].GetInt32()..span[1].GetInt32()], names));
        }
        var summary = run.StderrLines[^1];
        Assert.StartsWith("personal corpus: 3 stories, ", summary);
        Assert.Matches(@"\d+ private \(\d+\.\d%\)", summary);
        Assert.Contains("personal corpus: 3/3 stories", run.StderrLines);
    }

    [Fact]
    public async Task PersonalRefusesAnExistingFileUnlessForced()
    {
        using var temp = new TempDir();
        var output = temp["corpus.jsonl"];
        File.WriteAllText(output, "mine");

        var refused = await Spa.RunAsync(Personal(output));

        Expect.OneLineError(refused, "--force", exitCode: 2);
        Assert.Equal("mine", File.ReadAllText(output));

        var forced = await Spa.RunAsync(Personal(output, "--force"));

        Expect.Success(forced);
        Assert.Equal(3, File.ReadAllLines(output).Length);
    }

    [Theory]
    [InlineData("--names", "Zorb1ax,Quimby", "single word of letters")]
    [InlineData("--names", "Zorblax Quimby", "single word of letters")]
    [InlineData("--names", "Zorblax,,Quimby", "single word of letters")]
    [InlineData("--names", "Zorblax,Zorblax", "given twice")]
    [InlineData("--count", "0", "--count must be positive")]
    [InlineData("--max-tokens", "-5", "--max-tokens must be positive")]
    public async Task PersonalRejectsBadOptionsInOneLine(string option, string value, string phrase)
    {
        using var temp = new TempDir();
        string[] names = option == "--names" ? [] : ["--names", "Zorblax"];
        string[] args = ["data", "personal", "--model", SharedData.Stories260K, "--out", temp["corpus.jsonl"], .. names, option, value];

        var run = await Spa.RunAsync(args);

        Expect.OneLineError(run, phrase, exitCode: 2);
        Assert.False(File.Exists(temp["corpus.jsonl"]));
    }

    [Fact]
    public async Task PersonalNeedsNamesAndAnOutputFile()
    {
        using var temp = new TempDir();
        var withoutNames = await Spa.RunAsync("data", "personal", "--model", SharedData.Stories260K, "--out", temp["corpus.jsonl"]);

        Expect.OneLineError(withoutNames, "--names", exitCode: 2);
        Assert.Contains("--random-names", withoutNames.Stderr);

        var withoutOutput = await Spa.RunAsync("data", "personal", "--model", SharedData.Stories260K, "--names", "Zorblax");

        Expect.OneLineError(withoutOutput, "--out", exitCode: 2);
    }

    [Fact]
    public async Task PersonalDrawsTheNamesOfASimulatedUserFromItsSeed()
    {
        using var temp = new TempDir();
        string[] Draw(string output, string seed) =>
            ["data", "personal", "--model", SharedData.Stories260K, "--random-names", "3", "--seed", seed, "--count", "3", "--out", output];

        var first = await Spa.RunAsync(Draw(temp["a.jsonl"], "5"));
        var again = await Spa.RunAsync(Draw(temp["b.jsonl"], "5"));
        var other = await Spa.RunAsync(Draw(temp["c.jsonl"], "6"));

        foreach (var run in new[] { first, again, other }) Expect.Success(run);
        var drawn = DrawnNames(first);
        Assert.Equal(3, drawn.Length);
        Assert.Equal(drawn, DrawnNames(again));
        Assert.NotEqual(drawn, DrawnNames(other));
        Assert.Equal(File.ReadAllText(temp["a.jsonl"]), File.ReadAllText(temp["b.jsonl"]));
        foreach (var line in File.ReadAllLines(temp["a.jsonl"]))
        {
            using var row = JsonDocument.Parse(line);
            Assert.All(row.RootElement.GetProperty("names").EnumerateArray(), n => Assert.Contains(n.GetString(), drawn));
        }
    }

    private static string[] DrawnNames(SpaResult run)
    {
        var line = Assert.Single(run.StderrLines, l => l.Contains("drew the private names", StringComparison.Ordinal));
        var names = line[(line.IndexOf("names ", StringComparison.Ordinal) + "names ".Length)..line.IndexOf(" from seed", StringComparison.Ordinal)];
        return names.Split(", ");
    }

    [Theory]
    [InlineData("or draw them with --random-names", "--names", "Zorblax", "--random-names", "2")]
    [InlineData("--random-names must be positive", "--random-names", "0")]
    public async Task PersonalTakesNamesOneWayOnly(string phrase, params string[] names)
    {
        using var temp = new TempDir();
        var run = await Spa.RunAsync(["data", "personal", "--model", SharedData.Stories260K, "--out", temp["corpus.jsonl"], .. names]);

        Expect.OneLineError(run, phrase, exitCode: 2);
    }

    [Fact]
    public async Task PersonalReportsAMissingOutputDirectory()
    {
        using var temp = new TempDir();

        var run = await Spa.RunAsync(Personal(Path.Combine(temp.Path, "missing", "corpus.jsonl")));

        Expect.OneLineError(run, "does not exist", exitCode: 2);
    }
}
