using System.Net;
using System.Text.Json;
using Xunit.Abstractions;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// Admission control on a real host: beyond its places and its queue, a burst is refused with 429 and Retry-After
/// while every accepted request finishes with the engine's text; a generation whose KV-cache estimate does not fit
/// beside the running ones is refused, a smaller one is not; a queued request that gets no place in time is refused;
/// each refusal is counted by reason, and the gauges return to zero.
/// </summary>
public sealed class AdmissionTests(ITestOutputHelper output)
{
    private const string Prompt = "Once upon a time";

    [Fact]
    public async Task ABurstOverCapacityGets429WithRetryAfterAndEveryAcceptedRequestFinishes()
    {
        await using var server = ServerFixture.With(
            ("Spa__Serving__MaxConcurrentGenerations", "2"), ("Spa__Serving__MaxQueuedGenerations", "2"), ("Spa__Serving__QueueTimeoutMs", "60000"));
        await server.InitializeAsync();
        var expected = Reference.Generate(Prompt, 200).Text;
        var before = await server.ScrapeAsync();

        var clients = Enumerable.Range(0, 12).Select(_ => server.Client()).ToArray();
        var responses = await Task.WhenAll(clients.Select(async client =>
        {
            using var response = await client.PostAsync("/v1/completions", PluginCompletionTests.Json(Completion(200)));
            return (response.StatusCode, RetryAfter: response.Headers.RetryAfter?.Delta, Body: JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
        }));
        foreach (var client in clients) client.Dispose();

        var accepted = responses.Where(r => r.StatusCode == HttpStatusCode.OK).ToArray();
        var refused = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToArray();
        Assert.Equal(responses.Length, accepted.Length + refused.Length); // nothing else: no 5xx
        Assert.True(accepted.Length >= 4, $"{accepted.Length} accepted: two running and two queued at least");
        Assert.NotEmpty(refused);
        output.WriteLine($"burst of {responses.Length}: {accepted.Length} accepted (all equal to the engine), {refused.Length} refused with 429");
        Assert.All(accepted, r => Assert.Equal(expected, PluginCompletionTests.Text(r.Body)));
        Assert.All(refused, r =>
        {
            Assert.Equal(TimeSpan.FromSeconds(1), r.RetryAfter);
            Assert.Equal("over_capacity", r.Body.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("2 generations at once, 2 waiting", r.Body.GetProperty("error").GetProperty("message").GetString());
        });

        var after = await server.ScrapeAsync();
        Assert.Equal(refused.Length, after.Sum("spa_admission_refusals_total", ("reason", AdmissionRefusals.QueueFull))
            - before.Sum("spa_admission_refusals_total", ("reason", AdmissionRefusals.QueueFull)));
        Assert.Equal(0, after.Sum("spa_admission_running"));
        Assert.Equal(0, after.Sum("spa_admission_queued"));
        Assert.Equal(0, after.Sum("spa_admission_kv_bytes"));
    }

    [Fact]
    public async Task KvMemoryAndQueueTimeBoundAdmission()
    {
        // stories260K keeps 1,280 bytes of keys and values per token (5 layers x 2 x 4 KV heads x 8 x fp32): a budget
        // of 600 tokens' worth holds a 400-token generation and a 50-token one, not two of 400.
        const int bytesPerToken = 1280;
        await using var server = ServerFixture.With(
            ("Spa__Serving__MaxConcurrentGenerations", "2"), ("Spa__Serving__MaxQueuedGenerations", "1"), ("Spa__Serving__QueueTimeoutMs", "1000"),
            ("Spa__Model__KvCacheBytesPerShard", (600 * bytesPerToken).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        await server.InitializeAsync();
        using var client = server.Client();
        // A simulated phone on 4G (60 ms a round trip) keeps the long generations running while the test goes on.
        var phone = await PluginCompletionTests.SimulatedDevice(client, "phone", RandomPlugin.Ladder, "phone-4g");
        var before = await server.ScrapeAsync();

        using var longClient = server.Client();
        using var shortClient = server.Client();
        using (var running = await StartStream(longClient, Completion(400, phone)))
        {
            var refused = await PluginCompletionTests.Send(client, "/v1/completions", Completion(400), HttpStatusCode.TooManyRequests);
            Assert.Contains("more KV-cache memory than the 768000 bytes per shard", refused.GetProperty("error").GetProperty("message").GetString());
            Assert.Equal(Reference.Generate(Prompt, 20).Text,
                PluginCompletionTests.Text(await PluginCompletionTests.Send(client, "/v1/completions", Completion(20), HttpStatusCode.OK)));

            using var second = await StartStream(shortClient, Completion(50, phone)); // both places taken now
            using var waitingClient = server.Client();
            using var queueFullClient = server.Client();
            var waiting = waitingClient.PostAsync("/v1/completions", PluginCompletionTests.Json(Completion(10)));
            await WaitFor(server, "spa_admission_queued", 1);
            using var full = await queueFullClient.PostAsync("/v1/completions", PluginCompletionTests.Json(Completion(10)));
            Assert.Equal(HttpStatusCode.TooManyRequests, full.StatusCode);
            Assert.Contains("1 waiting", await full.Content.ReadAsStringAsync());
            using var timedOut = await waiting;
            Assert.Equal(HttpStatusCode.TooManyRequests, timedOut.StatusCode);
            Assert.Contains("no place to run became free within 1000 ms", await timedOut.Content.ReadAsStringAsync());
        } // the clients go away: their generations are cancelled and their places freed

        await WaitFor(server, "spa_admission_running", 0);
        Assert.Equal(Reference.Generate(Prompt, 20).Text,
            PluginCompletionTests.Text(await PluginCompletionTests.Send(client, "/v1/completions", Completion(20), HttpStatusCode.OK)));
        var after = await server.ScrapeAsync();
        foreach (var reason in AdmissionRefusals.All)
            Assert.Equal(1, after.Sum("spa_admission_refusals_total", ("reason", reason)) - before.Sum("spa_admission_refusals_total", ("reason", reason)));
        Assert.Equal(0, after.Sum("spa_admission_kv_bytes"));
    }

    private static string Completion(int maxTokens, string? device = null) => device is null
        ? JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = maxTokens })
        : JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = maxTokens, stream = true, spa = new { mode = "parallel", device_id = device } });

    /// <summary>A streamed completion whose first event has arrived: it is admitted and running.</summary>
    private static async Task<HttpResponseMessage> StartStream(HttpClient client, string json)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = PluginCompletionTests.Json(json) };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync());
        return response;
    }

    private static Task WaitFor(ServerFixture server, string gauge, double value) =>
        Eventually.Until(async () => (await server.ScrapeAsync()).Sum(gauge), sum => sum == value, TimeSpan.FromSeconds(30), $"{gauge} to reach {value}",
            TimeSpan.FromMilliseconds(20));
}
