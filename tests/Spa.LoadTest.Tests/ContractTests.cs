using System.Text.Json;
using Spa.Testing;
using Xunit.Abstractions;

namespace Spa.LoadTest.Tests;

/// <summary>
/// One short embedded run of every mode through the command line the checks use, on a fleet of two kinds of device:
/// phones on 4G with jitter and loss, and phones on 5G. Its delays are really waited by the cluster's simulated
/// devices; the report is read back from the files the run wrote.
/// </summary>
public sealed class EmbeddedRun : IAsyncLifetime
{
    public const string Modes = "base,parallel,spa,lora,adapter";

    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"spa-load-test-{Guid.NewGuid():N}");

    public string Json => Path.Combine(_folder, "report.json");
    public JsonElement Report { get; private set; }
    public string Stdout { get; private set; } = "";
    public string Stderr { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_folder);
        var fleet = Path.Combine(_folder, "fleet.json");
        await File.WriteAllTextAsync(fleet, """
            {
              "groups": [
                { "name": "phone-4g-lossy", "profile": "phone-4g", "jitter_ms": 10, "loss": 0.02 },
                { "name": "phone-5g", "profile": "phone-5g" }
              ]
            }
            """);
        await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(150),
            "--embedded", "--model", SharedData.Stories260K, "--devices", "4", "--concurrency", "2", "--duration", "6",
            "--modes", Modes, "--json", Json, "--fleet", fleet, "--max-tokens", "4", "--warmup", "0.3");
        (Stdout, Stderr) = (run.Stdout, run.Stderr);
        Assert.True(run.ExitCode == 0, run.ToString());
        Report = JsonDocument.Parse(await File.ReadAllTextAsync(Json)).RootElement.Clone();
    }

    public JsonElement Mode(string name) => Report.GetProperty("modes").EnumerateArray().Single(m => m.GetProperty("mode").GetString() == name);

    public Task DisposeAsync()
    {
        Directory.Delete(_folder, recursive: true);
        return Task.CompletedTask;
    }
}

/// <summary>
/// Latency is measured here, so CI runs these tests after the others, alone (<see cref="Timing"/>): a run that shares
/// two cores with other test projects measures their load, not the cluster's.
/// </summary>
[Trait("Category", Timing)]
public sealed class ContractTests(EmbeddedRun run, ITestOutputHelper output) : IClassFixture<EmbeddedRun>
{
    public const string Timing = "Timing";

    /// <summary>stories260K has 5 layers: LoRA asks the device once a layer, adapters twice.</summary>
    private const int Layers = 5;

    [Fact]
    public void EveryModeHasRequestsTokensAndTheMOfItsPlacementWithoutErrors()
    {
        output.WriteLine(run.Stdout);
        foreach (var name in EmbeddedRun.Modes.Split(','))
        {
            var mode = run.Mode(name);
            Assert.True(mode.GetProperty("requests").GetInt32() > 0, $"{name}: no measured request");
            Assert.Equal(0, mode.GetProperty("errors").GetInt32());
            Assert.True(mode.GetProperty("tokens").GetInt64() >= mode.GetProperty("requests").GetInt32(), $"{name}: fewer tokens than requests");
            Assert.True(mode.GetProperty("tokens_per_s").GetDouble() > 0, $"{name}: no throughput");
            var latency = mode.GetProperty("token_latency_ms");
            double p50 = latency.GetProperty("p50").GetDouble(), p95 = latency.GetProperty("p95").GetDouble(), p99 = latency.GetProperty("p99").GetDouble();
            Assert.True(0 < p50 && p50 <= p95 && p95 <= p99, $"{name}: percentiles {p50}, {p95}, {p99}");
            Assert.True(latency.GetProperty("mean").GetDouble() > 0);
            Assert.True(mode.GetProperty("predicted_token_latency_ms").GetDouble() > 0);
            var ttft = mode.GetProperty("ttft_ms");
            Assert.True(0 < ttft.GetProperty("p50").GetDouble() && ttft.GetProperty("p50").GetDouble() <= ttft.GetProperty("p95").GetDouble());
        }
        Assert.Equal(0, run.Mode("base").GetProperty("m").GetDouble());
        Assert.Equal(1, run.Mode("parallel").GetProperty("m").GetDouble());
        Assert.Equal(Layers, run.Mode("lora").GetProperty("m").GetDouble());
        Assert.Equal(2 * Layers, run.Mode("adapter").GetProperty("m").GetDouble());
        // spa's M is the fleet's round trips over its tokens: the token-weighted mean of its groups', and the random
        // plugin's gate both asks the device and keeps tokens from it.
        var spa = run.Mode("spa");
        var groups = spa.GetProperty("groups").EnumerateArray().ToArray();
        double weighted = groups.Sum(g => g.GetProperty("m").GetDouble() * g.GetProperty("tokens").GetInt64()) / groups.Sum(g => g.GetProperty("tokens").GetInt64());
        // The report rounds every M to 4 decimals, so the two differ by at most 1e-4 (rounding both to 3 places would
        // fail whenever they fall on either side of a rounding boundary).
        Assert.Equal(spa.GetProperty("m").GetDouble(), weighted, tolerance: 1e-4);
        Assert.True(spa.GetProperty("m").GetDouble() is > 0 and < 1, $"spa's M: {spa.GetProperty("m").GetDouble()}");
        Assert.True(run.Report.GetProperty("peak_rss_mb").GetDouble() > 100, "the peak RSS of a process that holds a cluster");
    }

    /// <summary>
    /// The latency model's mean per-token latency, given each request's measured cloud time and M (and the delivery
    /// to the client measured in base mode), within 10% of the measured mean, for every mode on both link profiles.
    /// </summary>
    [Fact]
    public void TheLatencyModelPredictsTheMeasuredMeanPerTokenLatencyWithinTenPercentOnBothLinks()
    {
        var failures = new List<string>();
        foreach (var name in EmbeddedRun.Modes.Split(','))
        {
            var groups = run.Mode(name).GetProperty("groups").EnumerateArray().ToList();
            Assert.Equal(["phone-4g-lossy", "phone-5g"], groups.Select(g => g.GetProperty("group").GetString()).Order());
            foreach (var group in groups)
            {
                double measured = group.GetProperty("mean_token_latency_ms").GetDouble(), predicted = group.GetProperty("predicted_token_latency_ms").GetDouble();
                string line = $"{name} on {group.GetProperty("group").GetString()}: measured {measured:F2} ms, model {predicted:F2} ms ({Math.Round((predicted / measured - 1) * 100, 1):+0.0;-0.0;0.0}%)";
                output.WriteLine(line);
                if (Math.Abs(predicted / measured - 1) > 0.10) failures.Add(line);
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures) + "\n" + run.Stdout);
    }

    [Fact]
    public void TheLossyLinkReallyCostsMoreThanItsRoundTripTime()
    {
        // 4G: 60 ms round trips, and a phone's side network adds microseconds. With 2% loss every lost transmission
        // waits a second round trip, so the measured network time per round trip exceeds the plain RTT.
        var phone = run.Mode("parallel").GetProperty("groups").EnumerateArray().Single(g => g.GetProperty("group").GetString() == "phone-4g-lossy");
        Assert.True(phone.GetProperty("measured_ms").GetProperty("network").GetDouble() > 60, phone.ToString());
        // The model: (60 ms + 1,536 B up at 10 Mbit/s + 256 B down at 30 Mbit/s) / (1 - 0.02) per round trip, M = 1.
        double expected = (60 + 1536 * 8 / 10e3 + 256 * 8 / 30e3) / 0.98;
        Assert.Equal(expected, phone.GetProperty("predicted_ms").GetProperty("network").GetDouble(), 2);
    }

    [Fact]
    public void CsvMarkdownAndPlotsAreWrittenBesideTheJson()
    {
        var stem = Path.Combine(Path.GetDirectoryName(run.Json)!, Path.GetFileNameWithoutExtension(run.Json));
        var csv = File.ReadAllLines(stem + ".csv");
        Assert.StartsWith("mode,group,requests,errors,tokens,tokens_per_s,m,", csv[0]);
        foreach (var name in EmbeddedRun.Modes.Split(',')) Assert.Contains(csv, line => line.StartsWith($"{name},all,"));
        var markdown = File.ReadAllText(stem + ".md");
        Assert.Contains("| adapter |", markdown);
        foreach (var plot in new[] { "cdf", "throughput", "breakdown" })
        {
            var png = File.ReadAllBytes($"{stem}-{plot}.png");
            Assert.True(png.Length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G', $"{plot} is not a PNG");
        }
    }
}
