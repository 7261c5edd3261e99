using System.Net;
using System.Text.Json;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// The short soak: a real <c>spa serve</c> that admits 4 generations and queues 4, driven by <c>spa bench soak</c>
/// with 16 clients for 15 s after a warm-up. Nothing fails on the server's side, some requests are refused with 429,
/// every accepted one finishes, and the server's resident memory after the load is back within
/// <see cref="MemoryMargin"/> of the baseline taken after the warm-up.
/// </summary>
public sealed class SoakTests
{
    /// <summary>What the resident set may keep after the load beyond its settled size after the warm-up.</summary>
    public const long MemoryMargin = 64L << 20;

    [Fact]
    public async Task AnOverCapacitySoakRefusesWith429FinishesEveryAcceptedRequestAndReturnsToBaselineMemory()
    {
        using var temp = new TempDir();
        var ports = Ports.Free(3);
        const string key = "soak-key";
        await using var server = Spa.Start(
            ["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}", "--api-key", key,
             "--silo-port", ports[1].ToString(), "--gateway-port", ports[2].ToString()],
            new Dictionary<string, string?>
            {
                ["Spa__Serving__MaxConcurrentGenerations"] = "4",
                ["Spa__Serving__MaxQueuedGenerations"] = "4",
                ["Spa__Serving__QueueTimeoutMs"] = "2000",
            });
        await WaitUntilHealthy(server, ports[0]);

        var file = temp["soak.json"];
        var run = await Spa.RunAsync(["bench", "soak", "--url", $"http://127.0.0.1:{ports[0]}", "--api-key", key, "--pid", server.Id.ToString(),
            "--warmup", "8", "--duration", "15", "--settle", "5", "--concurrency", "16", "--max-tokens", "48", "--json", file]);
        Expect.Success(run);
        var root = JsonDocument.Parse(File.ReadAllText(file)).RootElement;
        var requests = root.GetProperty("requests").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt64());
        Assert.All(requests.Keys, status => Assert.True(status is "200" or "429", $"status {status} in {root}"));
        Assert.Equal(0, root.GetProperty("transport_errors").GetInt64());
        Assert.True(requests.GetValueOrDefault("429") > 0, $"no request was refused: {root}");
        Assert.True(requests.GetValueOrDefault("200") > 0, $"no request was accepted: {root}");
        Assert.Equal(requests["200"], root.GetProperty("completed").GetInt64()); // every accepted request finished
        Assert.Equal(48 * requests["200"], root.GetProperty("tokens").GetInt64());

        var memory = root.GetProperty("memory");
        Assert.Equal(server.Id, memory.GetProperty("pid").GetInt32());
        long baseline = memory.GetProperty("baseline_rss_bytes").GetInt64(), after = memory.GetProperty("after_rss_bytes").GetInt64();
        Assert.True(memory.GetProperty("peak_rss_bytes").GetInt64() > 0);
        Assert.True(after <= baseline + MemoryMargin, $"resident memory {after >> 20} MiB after the load, {baseline >> 20} MiB before it");
        Assert.False(server.HasExited, server.ToString());
        Assert.Equal(0, await server.TerminateAsync(TimeSpan.FromSeconds(30)));
    }

    private static async Task WaitUntilHealthy(ChildProcess server, int port)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            Assert.False(server.HasExited, $"spa serve exited before it was healthy\n{server}");
            Assert.True(DateTime.UtcNow < deadline, $"not healthy after 120 s\n{server}");
            try
            {
                using var response = await http.GetAsync("/healthz");
                if (response.StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            await Task.Delay(200);
        }
    }
}
