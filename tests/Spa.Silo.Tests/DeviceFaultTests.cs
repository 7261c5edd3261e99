using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Spa.Grains.Abstractions;
using Spa.Testing;
using Xunit.Abstractions;

namespace Spa.Silo.Tests;

/// <summary>
/// A real spa-device process killed in the middle of a long generation: the session goes on without it, degraded,
/// from the step that was in flight, every token after that is the base model's own continuation, and no token is
/// lost; a new device process is used again by the next request.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class DeviceLossTests(ServerFixture server, ITestOutputHelper output) : IDisposable
{
    private const string Secret = "device-loss-secret-0123456789";
    private const int MaxTokens = 150;
    private readonly PluginCopy _copy = new();

    public void Dispose() => _copy.Dispose();

    [Fact]
    [Trait("Category", "Timing")] // the first degraded token must come within 5 s of the kill
    public async Task ADeviceKilledMidGenerationLeavesTheBaseContinuationAndANewProcessIsUsedAgain()
    {
        using var client = server.Client();
        var id = await ConnectedDeviceTests.Register(client, "loss", Secret);
        _copy.Make();
        var gateway = $"127.0.0.1:{server.GatewayPort}";
        var served = server.App.Services.GetRequiredService<ServedModel>();
        var prompt = Reference.Encode("Once upon a time");
        var request = new GenerationRequest([.. prompt], MaxTokens)
        {
            Shards = served.Shards,
            Model = served.Name,
            Plugin = new() { Mode = SessionMode.Parallel, DeviceId = id, Fallback = FallbackPolicy.Base },
            User = ApiKeys.DefaultUser,
        };
        var session = server.App.Services.GetRequiredService<IGrainFactory>().GetGrain<IDecodingSessionGrain>(Guid.NewGuid().ToString("N"));

        var events = new List<TokenEvent>();
        TimeSpan? killedAt = null, firstDegradedAt = null;
        var clock = Stopwatch.StartNew();
        // A phone on 5G: each token waits about 20 ms for the device, so the generation is long enough to kill it midway.
        await using (var device = SpaDevice.Start(gateway, id, Secret, _copy.Folder, 2, "--profile", "phone-5g"))
        {
            await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
            await foreach (var token in session.GenerateStream(request))
            {
                events.Add(token);
                if (token.Degraded) firstDegradedAt ??= clock.Elapsed;
                if (killedAt is null && events.Count(e => e.Edge) == 30)
                {
                    await device.KillAsync();
                    killedAt = clock.Elapsed;
                }
            }
        }
        await session.End();

        Assert.NotNull(killedAt);
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.Index)); // no token lost or repeated
        int firstDegraded = events.FindIndex(e => e.Degraded);
        Assert.True(firstDegraded >= 30, $"the first degraded token is #{firstDegraded}, before the device was killed");
        Assert.All(events[..firstDegraded], e => Assert.True(e.Edge));
        Assert.All(events[firstDegraded..], e => Assert.False(e.Edge)); // the device is gone: every later step goes on without it
        Assert.All(events[firstDegraded..], e => Assert.True(e.Degraded));
        // The step in flight when the device died waits at most Spa:Edge:TimeoutMs (2 s by default) before it falls back.
        Assert.True(firstDegradedAt - killedAt < TimeSpan.FromSeconds(2 + 3), $"the first degraded token came {(firstDegradedAt - killedAt)?.TotalSeconds:F1} s after the kill");

        // Every token from the first degraded one is the base's greedy continuation of what came before it.
        var before = prompt.Concat(events[..firstDegraded].Select(e => e.Token)).ToArray();
        var after = events[firstDegraded..].Select(e => e.Token).ToArray();
        Assert.NotEmpty(after);
        var continuation = Reference.Continue(before, after.Length);
        int compared = Math.Min(after.Length, continuation.Count); // the reference leaves out an end-of-sequence token the stream carries
        Assert.True(compared >= after.Length - 1);
        Assert.Equal(continuation.Take(compared), after.Take(compared));
        output.WriteLine($"device killed after {firstDegraded} device tokens; {after.Length} tokens went on degraded, none lost; " +
            $"first degraded token {(firstDegradedAt - killedAt)!.Value.TotalMilliseconds:F0} ms after the kill");

        // A new process for the same device: the next request uses it for every token.
        _copy.Make();
        await using (var device = SpaDevice.Start(gateway, id, Secret, _copy.Folder))
        {
            await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
            var again = (await PluginCompletionTests.Send(client, "/v1/completions",
                JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 16, spa = new { mode = "parallel", device_id = id, fallback = "fail" } }),
                HttpStatusCode.OK)).GetProperty("spa");
            Assert.False(again.GetProperty("degraded").GetBoolean());
            Assert.Equal(again.GetProperty("generated_tokens").GetInt64(), again.GetProperty("transmissions").GetInt64());
        }
    }
}

/// <summary>
/// A real spa-device that answers too slowly (it emulates a phone on 4G: 60 ms a round trip) for a host whose
/// Spa:Edge:TimeoutMs is 30: a request never hangs on it, it follows its fallback (base: the base's text, degraded,
/// counted in spa_edge_fallbacks_total; fail: 503 naming the timeout), in bounded time.
/// </summary>
public sealed class SlowDeviceTests(ITestOutputHelper output) : IDisposable
{
    private const string Secret = "slow-device-secret-0123456789";
    private readonly PluginCopy _copy = new();

    public void Dispose() => _copy.Dispose();

    [Fact]
    [Trait("Category", "Timing")] // each fallback must answer within 10 s
    public async Task ATooSlowDeviceTimesOutIntoTheFallbackPolicy()
    {
        await using var server = ServerFixture.With(("Spa__Edge__TimeoutMs", "30"));
        await server.InitializeAsync();
        using var client = server.Client();
        var id = await ConnectedDeviceTests.Register(client, "slow", Secret);
        _copy.Make();
        // It renews its connection every second, so it is back (and slow again) soon after each timeout.
        await using var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, Secret, _copy.Folder, 1, "--profile", "phone-4g");
        await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
        Assert.Contains("as a phone-4g device", device.Stdout);

        var plain = await PluginCompletionTests.Send(client, "/v1/completions", """{"prompt": "Once upon a time", "max_tokens": 20}""", HttpStatusCode.OK);
        var scrapedBefore = await server.ScrapeAsync();
        double fallbacksBefore = scrapedBefore.Sum("spa_edge_fallbacks_total");
        double failedBefore = scrapedBefore.Sum("spa_edge_transmissions_failed_total", ("mode", "parallel"));
        var clock = Stopwatch.StartNew();
        var degraded = await PluginCompletionTests.Send(client, "/v1/completions", Request(id, "base"), HttpStatusCode.OK);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed.TotalSeconds:F1} s");
        output.WriteLine($"fallback base: 20 tokens in {clock.Elapsed.TotalMilliseconds:F0} ms");
        var spa = degraded.GetProperty("spa");
        Assert.True(spa.GetProperty("degraded").GetBoolean());
        Assert.Equal(0, spa.GetProperty("transmissions").GetInt64()); // no late answer was used
        Assert.Equal(PluginCompletionTests.Text(plain), PluginCompletionTests.Text(degraded));
        long fallbacks = spa.GetProperty("fallbacks").GetInt64();
        Assert.True(fallbacks >= 20, $"{fallbacks} fallbacks for 20 tokens");
        var scrapedAfter = await server.ScrapeAsync();
        Assert.Equal(fallbacks, scrapedAfter.Sum("spa_edge_fallbacks_total") - fallbacksBefore);
        // Every call the device did not answer was attempted: counted apart from the answered ones (none), and the wait
        // of the one that timed out (at least 30 ms; the calls after it are refused at once, the device being offline)
        // booked as network time.
        long failed = spa.GetProperty("failed_transmissions").GetInt64();
        Assert.True(failed >= 20, $"{failed} unanswered calls for 20 tokens");
        Assert.Equal(failed, scrapedAfter.Sum("spa_edge_transmissions_failed_total", ("mode", "parallel")) - failedBefore);
        double networkMs = spa.GetProperty("latency_ms").GetProperty("network").GetDouble() * spa.GetProperty("generated_tokens").GetInt64();
        Assert.True(networkMs >= 30, $"the timed-out call's wait should be network time: {networkMs:F1} ms in all");

        await WaitUntilConnected(client, id);
        clock.Restart();
        var error = (await PluginCompletionTests.Send(client, "/v1/completions", Request(id, "fail"), HttpStatusCode.ServiceUnavailable)).GetProperty("error");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed.TotalSeconds:F1} s");
        output.WriteLine($"fallback fail: 503 in {clock.Elapsed.TotalMilliseconds:F0} ms");
        Assert.Equal("device_unavailable", error.GetProperty("code").GetString());
        Assert.Contains("did not answer within 30 ms", error.GetProperty("message").GetString());
    }

    private static Task WaitUntilConnected(HttpClient client, string id) =>
        Eventually.Until(() => ConnectedDeviceTests.State(client, id), state => state == "connected", TimeSpan.FromSeconds(20), "the slow device to connect again");

    private static string Request(string device, string fallback) =>
        JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 20, spa = new { mode = "parallel", device_id = device, fallback } });
}
