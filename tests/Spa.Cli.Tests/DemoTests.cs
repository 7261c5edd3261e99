using Spa.Testing;
namespace Spa.Cli.Tests;

/// <summary>
/// <c>spa demo</c> end to end, made small: a corpus of 20 stories, one epoch, 12 tokens per mode, a device without
/// delays. Its table must hold the three modes with the figures the method fixes (parallel: M = 1 and the fp32 bytes
/// of one side step per token).
/// </summary>
public sealed class DemoTests
{
    [Fact]
    public async Task TheDemoTrainsServesAndReportsEachMode()
    {
        var run = await Spa.RunAsync(["demo", "--model", SharedData.Stories260K, "--stories", "20", "--epochs", "1", "--tokens", "12", "--profile", "local"],
            timeout: TimeSpan.FromMinutes(5));
        Assert.True(run.ExitCode == 0, run.ToString());
        var rows = run.Stdout.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal)).Select(l => l.Split('|', StringSplitOptions.TrimEntries)).ToArray();
        string[] Row(string mode) => Assert.Single(rows, r => r[1] == mode);
        Assert.Equal("0.000", Row("base")[3]);
        Assert.Equal("1.000", Row("parallel")[3]);
        Assert.Equal("1536", Row("parallel")[4]); // the taps h_0..h_5 of one position, 6 x 64 fp32 values
        Assert.Equal("256", Row("parallel")[5]);
        // spa's M comes from the calls the session made: each carried the same taps up and out down as parallel's.
        double m = double.Parse(Row("spa")[3], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(1536 * m, double.Parse(Row("spa")[4], System.Globalization.CultureInfo.InvariantCulture), 1.5);
        Assert.Equal(256 * m, double.Parse(Row("spa")[5], System.Globalization.CultureInfo.InvariantCulture), 0.75);
        Assert.Contains("[brackets]", run.Stdout); // not a terminal: edge tokens are marked, not coloured
        Assert.Contains("demo: corpus and plugin ready", run.Stderr);
    }

    [Fact]
    public async Task BadDemoArgumentsAreOneLineErrors()
    {
        foreach (var args in new[] { new[] { "demo", "--stories", "3" }, ["demo", "--profile", "pigeon"], ["demo", "--names", "Zor blax"], ["demo", "--tau", "2"] })
        {
            var run = await Spa.RunAsync(args);
            Assert.True(run.ExitCode == 2, run.ToString());
            Assert.Single(run.StderrLines);
        }
    }
}
