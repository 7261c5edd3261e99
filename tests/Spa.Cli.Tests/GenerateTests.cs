using Spa.Testing;
namespace Spa.Cli.Tests;

/// <summary><c>spa generate</c> on stories260K: greedy text, sampling, stop strings, beam search.</summary>
public sealed class GenerateTests
{
    private const string Prompt = "Once upon a time";

    [Fact]
    public async Task GreedyContinuationMatchesTheReferenceAndStdoutHoldsOnlyTheStory()
    {
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--prompt", Prompt, "--max-tokens", "100");

        Expect.Success(run);
        var text = Expect.StoryText(run);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily", text);
        // The greedy continuation of the reference's own opening is the reference: stdout is exactly prompt +
        // continuation, a prefix of llama2.c's greedy text, with nothing else mixed in.
        var reference = SharedData.ExpectedGreedyFromBos;
        Assert.True(reference.StartsWith(text, StringComparison.Ordinal), $"stdout is not a prefix of the greedy reference\n{run}");
        Assert.True(text.Length > 200, $"100 tokens should give more text\n{run}");
        Assert.DoesNotContain("tokens/s", run.Stdout);

        var summary = Expect.GenerateSummary(run);
        Assert.StartsWith("100 tokens in ", summary);
        Assert.Contains("prompt 5 tokens", summary);
        Expect.NoStackTrace(run);
    }

    [Fact]
    public async Task NoEchoPrintsOnlyTheContinuation()
    {
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--prompt", Prompt, "--max-tokens", "20", "--no-echo");

        Expect.Success(run);
        var text = Expect.StoryText(run);
        Assert.StartsWith(", there was a little girl named Lily", text);
        Assert.StartsWith(Prompt + text, SharedData.ExpectedGreedyFromBos);
    }

    [Fact]
    public async Task StopStringEndsTheTextRightBeforeIt()
    {
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--prompt", Prompt, "--max-tokens", "100", "--stop", "Lily");

        Expect.Success(run);
        var text = Expect.StoryText(run);
        Assert.DoesNotContain("Lily", text);
        var reference = SharedData.ExpectedGreedyFromBos;
        Assert.Equal(reference[..reference.IndexOf("Lily", StringComparison.Ordinal)], text); // "... a little girl named "
        Assert.Contains("finish stop", Expect.GenerateSummary(run));
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleAndTheSeedMatters()
    {
        string[] Args(string seed) =>
            ["generate", "--model", SharedData.Stories260K, "--temperature", "1.0", "--top-p", "0.9", "--seed", seed, "--max-tokens", "60"];

        var first = await Spa.RunAsync(Args("7"));
        var again = await Spa.RunAsync(Args("7"));
        var other = await Spa.RunAsync(Args("8"));

        foreach (var run in new[] { first, again, other })
        {
            Expect.Success(run);
            Expect.GenerateSummary(run);
            Assert.True(Expect.StoryText(run).Trim().Length > 0, "empty sample\n" + run);
        }
        Assert.Equal(first.Stdout, again.Stdout);
        Assert.NotEqual(first.Stdout, other.Stdout);
    }

    [Fact]
    public async Task BeamSearchProducesText()
    {
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--prompt", Prompt, "--beams", "4", "--max-tokens", "30");

        Expect.Success(run);
        var text = Expect.StoryText(run);
        Assert.StartsWith(Prompt, text);
        Assert.True(text.Length > Prompt.Length + 20, "beam search added little or nothing\n" + run);
        Expect.GenerateSummary(run);
    }
}
