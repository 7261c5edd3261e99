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
        var run = await Spa.RunAsync("data", "personal", "--model", SharedData.Stories260K);

        Expect.OneLineError(run, "--names", exitCode: 2);
        Assert.Contains("--out", run.Stderr);
    }

    [Fact]
    public async Task PersonalReportsAMissingOutputDirectory()
    {
        using var temp = new TempDir();

        var run = await Spa.RunAsync(Personal(Path.Combine(temp.Path, "missing", "corpus.jsonl")));

        Expect.OneLineError(run, "does not exist", exitCode: 2);
    }
}
