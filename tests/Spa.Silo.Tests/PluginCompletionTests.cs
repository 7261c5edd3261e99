using System.Net;
using System.Text;
using System.Text.Json;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// Devices and plugin modes over HTTP: registration, ownership (403), unknown devices (404), the response's spa
/// figures counted from the device's real calls, and the fallback policies when the device is offline.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class PluginCompletionTests(ServerFixture server)
{
    private const string Prompt = "Once upon a time";

    internal static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    internal static async Task<JsonElement> Send(HttpClient client, string path, string json, HttpStatusCode expected)
    {
        using var response = await client.PostAsync(path, Json(json));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"expected {(int)expected}, got {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>Registers a simulated device of <paramref name="profile"/> holding the plugin in <paramref name="pluginDir"/>, under a fresh id starting with <paramref name="prefix"/>.</summary>
    internal static async Task<string> SimulatedDevice(HttpClient client, string prefix, string pluginDir, string profile = "local")
    {
        var id = prefix + "-" + Guid.NewGuid().ToString("N")[..8];
        await Send(client, "/v1/devices", JsonSerializer.Serialize(new { device_id = id, simulated = new { plugin_dir = pluginDir, profile } }), HttpStatusCode.Created);
        return id;
    }

    private async Task<string> RegisterSimulated(HttpClient client)
    {
        var id = "phone-" + Guid.NewGuid().ToString("N")[..8];
        var body = await Send(client, "/v1/devices", JsonSerializer.Serialize(new { device_id = id, simulated = new { plugin_dir = RandomPlugin.Ladder, profile = "local" } }), HttpStatusCode.Created);
        Assert.Equal("simulated", body.GetProperty("state").GetString());
        Assert.Equal("ladder", body.GetProperty("plugin_kind").GetString());
        Assert.StartsWith("dev-", body.GetProperty("secret").GetString()); // generated, shown once
        return id;
    }

    [Fact]
    public async Task ADeviceIsRegisteredAndSeenOnlyByItsOwner()
    {
        using var alice = server.Client();
        using var bob = server.Client(ServerFixture.OtherKey);
        var id = await RegisterSimulated(alice);

        using (var response = await alice.GetAsync($"/v1/devices/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(JsonValueKind.Null, body.GetProperty("secret").ValueKind);
        }
        Assert.Equal(HttpStatusCode.Forbidden, (await bob.GetAsync($"/v1/devices/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await alice.GetAsync("/v1/devices/no-such-device")).StatusCode);
        await Send(bob, "/v1/devices", JsonSerializer.Serialize(new { device_id = id }), HttpStatusCode.Forbidden);
        await Send(alice, "/v1/devices", """{"device_id": "bad id!"}""", HttpStatusCode.BadRequest);
        await Send(alice, "/v1/devices", """{"device_id": "d1", "secret": "short"}""", HttpStatusCode.BadRequest);
        await Send(alice, "/v1/devices", """{"device_id": "d2", "simulated": {"plugin_dir": "/nonexistent/plugin"}}""", HttpStatusCode.BadRequest);
        await Send(alice, "/v1/devices", """{"device_id": "d3", "simulated": {"plugin_dir": "x", "profile": "pigeon-post"}}""", HttpStatusCode.BadRequest);
        await Send(alice, "/v1/devices", """{"device_id": "d4", "colour": "red"}""", HttpStatusCode.BadRequest);
    }

    [Theory]
    [InlineData("parallel")]
    [InlineData("spa")]
    public async Task APluginModeAnswersWithItsTransmissionsAndBytes(string mode)
    {
        using var client = server.Client();
        var id = await RegisterSimulated(client);
        var body = await Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 30, spa = new { mode, device_id = id } }), HttpStatusCode.OK);
        var spa = body.GetProperty("spa");
        long tokens = spa.GetProperty("generated_tokens").GetInt64(), transmissions = spa.GetProperty("transmissions").GetInt64();
        Assert.Equal(mode, spa.GetProperty("mode").GetString());
        Assert.Equal(30, tokens);
        if (mode == "parallel") Assert.Equal(tokens, transmissions);
        else Assert.InRange(transmissions, 1, tokens - 1);
        Assert.Equal((double)transmissions / tokens, spa.GetProperty("m").GetDouble(), 5);
        Assert.Equal(transmissions, spa.GetProperty("edge_tokens").GetInt64());
        // fp32: the taps h_0..h_5 of one position up (6 x 64 values), out down (64 values).
        Assert.Equal(transmissions * 6 * 64 * 4, spa.GetProperty("bytes_up").GetInt64());
        Assert.Equal(transmissions * 64 * 4, spa.GetProperty("bytes_down").GetInt64());
        Assert.False(spa.GetProperty("degraded").GetBoolean());
        var latency = spa.GetProperty("latency_ms");
        Assert.True(latency.GetProperty("total").GetDouble() > 0);
        // Each figure is rounded to 4 decimals, so the parts' sum can miss the total by 1.5e-4; rounding both to 2
        // decimals would flip at a boundary such as 1.2349 against 1.2351.
        Assert.Equal(latency.GetProperty("total").GetDouble(),
            latency.GetProperty("cloud").GetDouble() + latency.GetProperty("edge").GetDouble() + latency.GetProperty("network").GetDouble(), tolerance: 0.0002);
    }

    [Fact]
    public async Task AnotherUsersOrAnUnknownDeviceIsRefused()
    {
        using var alice = server.Client();
        using var bob = server.Client(ServerFixture.OtherKey);
        var id = await RegisterSimulated(alice);
        var error = (await Send(bob, "/v1/completions", JsonSerializer.Serialize(new { prompt = Prompt, spa = new { mode = "parallel", device_id = id } }),
            HttpStatusCode.Forbidden)).GetProperty("error");
        Assert.Equal("device_forbidden", error.GetProperty("code").GetString());
        await Send(alice, "/v1/completions", JsonSerializer.Serialize(new { prompt = Prompt, spa = new { mode = "parallel", device_id = "nobody-registered-this" } }),
            HttpStatusCode.NotFound);
        // Streaming refuses the same way, before any event is sent.
        await Send(bob, "/v1/completions", JsonSerializer.Serialize(new { prompt = Prompt, stream = true, spa = new { mode = "spa", device_id = id } }),
            HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task AnOfflineDeviceFollowsTheFallbackPolicy()
    {
        using var client = server.Client();
        var id = "offline-" + Guid.NewGuid().ToString("N")[..8];
        var registered = await Send(client, "/v1/devices", JsonSerializer.Serialize(new { device_id = id }), HttpStatusCode.Created);
        Assert.Equal("offline", registered.GetProperty("state").GetString()); // a real device that never connected

        var error = (await Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 10, spa = new { mode = "parallel", device_id = id, fallback = "fail" } }),
            HttpStatusCode.ServiceUnavailable)).GetProperty("error");
        Assert.Equal("device_unavailable", error.GetProperty("code").GetString());

        var degraded = await Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 10, spa = new { mode = "parallel", device_id = id, fallback = "base" } }), HttpStatusCode.OK);
        var plain = await Send(client, "/v1/completions", JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 10 }), HttpStatusCode.OK);
        Assert.Equal(Text(plain), Text(degraded)); // without its plugin, the generation is the base's
        var spa = degraded.GetProperty("spa");
        Assert.True(spa.GetProperty("degraded").GetBoolean());
        Assert.True(spa.GetProperty("fallbacks").GetInt64() >= 10);
        Assert.Equal(0, spa.GetProperty("transmissions").GetInt64());
    }

    internal static string Text(JsonElement body) => body.GetProperty("choices")[0].GetProperty("text").GetString()!;
}
