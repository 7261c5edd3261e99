using Spa.Testing;
namespace Spa.Cli.Tests;

/// <summary>Where generate finds its model: --model, else $SPA_MODEL, else stories260K beside the repository.</summary>
public sealed class ModelResolutionTests
{
    private static readonly string[] Greedy = ["generate", "--prompt", "Once upon a time", "--max-tokens", "12"];

    [Fact]
    public async Task WithoutModelOrVariableUsesStories260KBesideTheRepository()
    {
        var run = await Spa.RunAsync(Greedy, workingDirectory: SharedData.RepoRoot);

        Expect.Success(run);
        Assert.StartsWith("Once upon a time, there was a little girl", Expect.StoryText(run));
        Assert.StartsWith(Expect.StoryText(run), SharedData.ExpectedGreedyFromBos);
        Expect.GenerateSummary(run);
    }

    [Fact]
    public async Task VariableNamingAMissingPathFailsWithOneLine()
    {
        var missing = Path.Combine(Path.GetTempPath(), "spa-cli-tests-no-such-model-" + Guid.NewGuid().ToString("N"));
        var run = await Spa.RunAsync(Greedy, environment: new Dictionary<string, string?> { ["SPA_MODEL"] = missing });

        Expect.OneLineError(run, "does not exist");
        Assert.Contains(missing, run.Stderr);
    }

    [Fact]
    public async Task VariableNamingACheckpointFileIsUsed()
    {
        var run = await Spa.RunAsync(Greedy, environment: new Dictionary<string, string?> { ["SPA_MODEL"] = SharedData.Stories260KBin });

        Expect.Success(run);
        Assert.StartsWith(Expect.StoryText(run), SharedData.ExpectedGreedyFromBos);
    }

    [Fact]
    public async Task ModelOptionWinsOverTheVariable()
    {
        var missing = Path.Combine(Path.GetTempPath(), "spa-cli-tests-no-such-model-" + Guid.NewGuid().ToString("N"));
        var run = await Spa.RunAsync([.. Greedy, "--model", SharedData.Stories260K],
            environment: new Dictionary<string, string?> { ["SPA_MODEL"] = missing });

        Expect.Success(run);
        Assert.StartsWith(Expect.StoryText(run), SharedData.ExpectedGreedyFromBos);
    }
}
