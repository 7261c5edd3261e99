using Spa.Testing;

namespace Spa.LoadTest.Tests;

/// <summary>Mistakes on the command line end spa-load at once with one line on stderr and exit code 2.</summary>
public sealed class CommandLineTests
{
    [Theory]
    [InlineData("needs a target", "either --embedded or --cluster", "--devices", "4")]
    [InlineData("two targets", "either --embedded or --cluster", "--embedded", "--cluster", "127.0.0.1:30000")]
    [InlineData("lst", "does not run lst", "--embedded", "--modes", "base,lst")]
    [InlineData("unknown mode", "unknown mode 'fast'", "--embedded", "--modes", "fast")]
    [InlineData("more users than devices", "--concurrency 20 exceeds --devices 10", "--embedded", "--devices", "10", "--concurrency", "20")]
    [InlineData("zero duration", "--duration must be in", "--embedded", "--duration", "0")]
    [InlineData("unknown profile", "unknown profile 'phone-3g'", "--embedded", "--profiles", "phone-3g")]
    [InlineData("projection", "--project knows llama-7b", "--embedded", "--project", "gpt-2")]
    [InlineData("not a number", "spa-load: error:", "--embedded", "--devices", "many")]
    [InlineData("processes with emulated links", "--fleet and --profiles (emulated links) do not apply", "--embedded", "--device-processes", "--profiles", "laptop-wifi")]
    [InlineData("too many processes", "--device-processes runs at most 32 devices", "--embedded", "--device-processes", "--devices", "40")]
    public async Task ABadOptionIsOneLineAndExitCodeTwo(string what, string message, params string[] args)
    {
        await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(60), [.. args, "--model", SharedData.Stories260K]);
        Assert.True(run.ExitCode == 2, $"{what}: {run}");
        Assert.Contains(message, run.Stderr);
        Assert.Single(run.Stderr.Trim().Split('\n'));
        Assert.StartsWith("spa-load", run.Stderr);
    }

    [Fact]
    public async Task HelpDescribesTheContractsOptions()
    {
        await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(60), "--help");
        Assert.Equal(0, run.ExitCode);
        foreach (var option in new[] { "--embedded", "--cluster", "--model", "--devices", "--concurrency", "--duration", "--modes", "--json", "--rate", "--fleet", "--project" })
            Assert.Contains(option, run.Stdout);
    }
}
