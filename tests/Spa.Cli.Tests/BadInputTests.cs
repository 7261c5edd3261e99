using System.Text;

namespace Spa.Cli.Tests;

/// <summary>
/// Every mistake (bad files, bad options, bad command lines) ends in a non-zero exit and one clear line on stderr,
/// never a stack trace or a help page.
/// </summary>
public sealed class BadInputTests
{
    private static string[] Generate(params string[] more) => ["generate", "--prompt", "Once upon a time", "--max-tokens", "5", .. more];

    [Fact]
    public async Task MissingModelPath()
    {
        using var temp = new TempDir();
        var run = await Spa.RunAsync(Generate("--model", temp["nope.bin"]));

        Expect.OneLineError(run, "does not exist", exitCode: 1);
        Assert.Contains(temp["nope.bin"], run.Stderr);
    }

    [Fact]
    public async Task TruncatedCheckpoint()
    {
        using var temp = new TempDir();
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        File.WriteAllBytes(temp["stories260K.bin"], bytes[..(bytes.Length / 2)]);
        File.Copy(SharedData.Tok512, temp["tok512.bin"]);

        var run = await Spa.RunAsync(Generate("--model", temp.Path));

        Expect.OneLineError(run, "truncated", exitCode: 1);
    }

    [Fact]
    public async Task CheckpointWithExtraBytes()
    {
        using var temp = new TempDir();
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        File.WriteAllBytes(temp["stories260K.bin"], [.. bytes, .. new byte[1000]]);
        File.Copy(SharedData.Tok512, temp["tok512.bin"]);

        var run = await Spa.RunAsync(Generate("--model", temp["stories260K.bin"]));

        Expect.OneLineError(run, "trailing bytes", exitCode: 1);
    }

    [Fact]
    public async Task HuggingFaceConfigThatDoesNotMatchItsTensors()
    {
        using var temp = new TempDir();
        var converted = temp["hf"];
        Expect.Success(await Spa.RunAsync("convert", "--model", SharedData.Stories260K, "--out", converted));
        var configPath = Path.Combine(converted, "config.json");
        var config = File.ReadAllText(configPath);
        Assert.Contains("\"hidden_size\": 64", config);
        File.WriteAllText(configPath, config.Replace("\"hidden_size\": 64", "\"hidden_size\": 96"));

        var run = await Spa.RunAsync(Generate("--model", converted));

        Expect.OneLineError(run, "does not match the weights", exitCode: 1);
        Assert.Contains("hidden_size 96", run.Stderr);
    }

    [Fact]
    public async Task TokenizerOfUnknownFormat()
    {
        using var temp = new TempDir();
        var random = new byte[4096];
        new Random(1234).NextBytes(random);
        random[0] = 0xFF; // neither a llama2.c header nor a protobuf opening
        File.WriteAllBytes(temp["random.bin"], random);
        File.WriteAllText(temp["tokenizer.json"], "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", Encoding.UTF8);

        foreach (var file in new[] { temp["random.bin"], temp["tokenizer.json"] })
        {
            var run = await Spa.RunAsync(Generate("--model", SharedData.Stories260K, "--tokenizer", file));
            Expect.OneLineError(run, "not a llama2.c tokenizer file nor a SentencePiece model", exitCode: 1);
            Assert.Contains(file, run.Stderr);
        }
    }

    [Fact]
    public async Task PromptLongerThanTheContext()
    {
        var prompt = string.Concat(Enumerable.Repeat("hello ", 2000));
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--prompt", prompt, "--max-tokens", "5");

        Expect.OneLineError(run, "context holds 512", exitCode: 2); // and the prompt is not echoed before the error
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    public async Task MaxTokensThatIsNotPositive(string value)
    {
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--max-tokens", value);

        Expect.OneLineError(run, $"--max-tokens must be positive, got {value}", exitCode: 2);
    }

    [Fact]
    public async Task NegativeTemperature()
    {
        var run = await Spa.RunAsync(Generate("--model", SharedData.Stories260K, "--temperature", "-1"));

        Expect.OneLineError(run, "temperature must be", exitCode: 2);
    }

    /// <summary>System.CommandLine's own parse errors: one line on stderr, exit 2, no help page on stdout.</summary>
    [Theory]
    [InlineData("'abc'", "generate", "--max-tokens", "abc")]
    [InlineData("'--bogus'", "generate", "--bogus")]
    [InlineData("'extra'", "generate", "--max-tokens", "5", "extra")]
    [InlineData("--out", "convert", "--model", "x.bin")]
    [InlineData("Required command", "bench")]
    [InlineData("Required command")]
    [InlineData("'frobnicate'", "frobnicate")]
    [InlineData("Unrecognized command or argument '--bogus'. Cannot parse argument 'x'", "generate", "--bogus", "--max-tokens", "x")]
    [InlineData("'--nope'", "bench", "decode", "--nope")]
    public async Task CommandLineThatDoesNotParse(string phrase, params string[] args)
    {
        var run = await Spa.RunAsync(args);

        Expect.OneLineError(run, phrase, exitCode: 2);
        Assert.Contains("--help", run.Stderr);
    }

    [Fact]
    public async Task HelpStillPrintsHelpOnStdout()
    {
        var run = await Spa.RunAsync("generate", "--help");

        Expect.Success(run);
        Assert.Contains("--max-tokens", run.Stdout);
        Assert.Equal("", run.Stderr);
    }
}
