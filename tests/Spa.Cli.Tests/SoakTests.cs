using System.Globalization;
using System.Text.Json;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// The short soak: a real <c>spa serve</c> that admits 4 generations and queues 4, driven by <c>spa bench soak</c>
/// with 16 clients for 15 s after a warm-up. Nothing fails on the server's side, some requests are refused with 429,
/// every accepted one finishes, the server trims its memory in the quiet periods after the warm-up and after the load
/// (<see cref="TrimAfterIdleSeconds"/>), its token streams' queue caches have dropped every token but each queue's newest
/// once <see cref="TokenCacheSeconds"/> have passed (Orleans' own counters on <c>/metrics</c>), and its resident memory
/// after the load is back within <see cref="MemoryMargin"/> of the baseline taken after the warm-up.
/// </summary>
public sealed class SoakTests
{
    /// <summary>What the resident set may keep after the load beyond its settled size after the warm-up.</summary>
    public const long MemoryMargin = 64L << 20;

    /// <summary>Idle seconds before the server trims: well inside the quiet periods, which allow for the last requests to finish.</summary>
    private const int TrimAfterIdleSeconds = 2;

    /// <summary>How long a published token stays in the stream cache: well inside the quiet period after the load.</summary>
    private const int TokenCacheSeconds = 2;

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
                ["Spa__Memory__TrimAfterIdleSeconds"] = TrimAfterIdleSeconds.ToString(CultureInfo.InvariantCulture),
                ["Spa__Sessions__TokenCacheSeconds"] = TokenCacheSeconds.ToString(CultureInfo.InvariantCulture),
            });
        using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports[0]}"), Timeout = TimeSpan.FromSeconds(10) })
            await ServeProcess.WaitUntilHealthy(server, http);
        // The first trim comes once the model's warm-up has been idle as long: counted before the soak, so that the two
        // counted after it are the quiet periods' (a second trim of one quiet period is minutes away).
        var trimsBefore = await WaitForMemoryTrim(server, ports[0]);

        var file = temp["soak.json"];
        var run = await Spa.RunAsync(["bench", "soak", "--url", $"http://127.0.0.1:{ports[0]}", "--api-key", key, "--pid", server.Id.ToString(),
            "--warmup", "8", "--duration", "15", "--settle", "8", "--concurrency", "16", "--max-tokens", "48", "--json", file]);
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
        var metrics = await Metrics(ports[0]);
        Assert.True(metrics.Sum("spa_memory_trims_total") - trimsBefore >= 2, $"the server should have trimmed after the warm-up and after the load\n{server}");
        // Every token was published on its session's stream; a queue's cache keeps only its newest token past the window.
        foreach (var name in new[] { "orleans_streams_queue_cache_messages_added_total", "orleans_streams_queue_cache_messages_purged_total" })
            Assert.True(metrics.Has(name), $"{name} is not on /metrics");
        double cached = metrics.Sum("orleans_streams_queue_cache_messages_added_total");
        double dropped = metrics.Sum("orleans_streams_queue_cache_messages_purged_total");
        int queues = metrics.Samples.Count(s => s.Name == "orleans_streams_queue_cache_messages_added_total");
        Assert.True(cached >= root.GetProperty("tokens").GetInt64(), $"{cached} tokens went through the stream caches, fewer than the soak's");
        Assert.True(cached - dropped <= queues, $"{cached - dropped} tokens still in {queues} stream caches {TokenCacheSeconds} s after they came");
        Assert.False(server.HasExited, server.ToString());
        Assert.Equal(0, await server.TerminateAsync(TimeSpan.FromSeconds(30)));
    }

    private static async Task<Exposition> Metrics(int port)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        return await Exposition.ScrapeAsync(http);
    }

    private static Task<double> WaitForMemoryTrim(ChildProcess server, int port) =>
        Eventually.Until(async () => (await Metrics(port)).Sum("spa_memory_trims_total"), trims => trims >= 1, TimeSpan.FromSeconds(30),
            "a memory trim after the server became healthy", TimeSpan.FromMilliseconds(200), context: server.ToString);
}
