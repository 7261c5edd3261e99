using System.Net;
using System.Text.Json;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// A real device: a spa-device process holding the plugin, connected over its own TCP connection to the host's
/// gateway. Its answers must give the same text as the simulated device with the same plugin (which equals the
/// in-process engine, see the grain tests), although the host never sees the plugin file: the device loads it, and
/// the test deletes it before generating. Killed, the device is replaced by the fallback policy; restarted, it serves
/// again.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ConnectedDeviceTests(ServerFixture server) : IDisposable
{
    private const string Secret = "connected-device-secret-0123";
    private readonly PluginCopy _copy = new();

    public void Dispose() => _copy.Dispose();

    private static string Request(string mode, string device, string fallback = "base") =>
        JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 24, spa = new { mode, device_id = device, fallback } });

    [Fact]
    public async Task ADeviceProcessServesItsPluginFallsBackWhenKilledAndServesAgainWhenBack()
    {
        using var client = server.Client();
        // The reference: a simulated device with the same plugin.
        var simulated = await PluginCompletionTests.SimulatedDevice(client, "sim", RandomPlugin.Ladder);
        var expected = await PluginCompletionTests.Send(client, "/v1/completions", Request("parallel", simulated), HttpStatusCode.OK);
        var baseline = await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 24 }), HttpStatusCode.OK);
        Assert.NotEqual(Text(baseline), Text(expected)); // the plugin changes the text, so equal texts below mean it was used

        var id = await Register(client, "real", Secret);
        _copy.Make();
        await using (var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, Secret, _copy.Folder))
        {
            await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
            _copy.Dispose(); // from here on the plugin exists only in the device's memory
            Assert.Equal("connected", await State(client, id));

            var answer = await PluginCompletionTests.Send(client, "/v1/completions", Request("parallel", id), HttpStatusCode.OK);
            Assert.Equal(Text(expected), Text(answer));
            Assert.Equal(24, answer.GetProperty("spa").GetProperty("transmissions").GetInt64());
            Assert.False(answer.GetProperty("spa").GetProperty("degraded").GetBoolean());
            var gated = await PluginCompletionTests.Send(client, "/v1/completions", Request("spa", id), HttpStatusCode.OK);
            Assert.Equal(Text(await PluginCompletionTests.Send(client, "/v1/completions", Request("spa", simulated), HttpStatusCode.OK)), Text(gated));

            await device.KillAsync();
            var degraded = await PluginCompletionTests.Send(client, "/v1/completions", Request("parallel", id), HttpStatusCode.OK);
            Assert.True(degraded.GetProperty("spa").GetProperty("degraded").GetBoolean());
            Assert.Equal(Text(baseline), Text(degraded));
            await PluginCompletionTests.Send(client, "/v1/completions", Request("parallel", id, "fail"), HttpStatusCode.ServiceUnavailable);
            Assert.Equal("offline", await State(client, id));
        }

        _copy.Make();
        await using (var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, Secret, _copy.Folder))
        {
            await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
            var again = await PluginCompletionTests.Send(client, "/v1/completions", Request("parallel", id), HttpStatusCode.OK);
            Assert.Equal(Text(expected), Text(again));
            Assert.False(again.GetProperty("spa").GetProperty("degraded").GetBoolean());
        }
    }

    [Fact]
    public async Task AWrongSecretIsRefusedAndTheProcessSaysSo()
    {
        using var client = server.Client();
        var id = await Register(client, "wrong", Secret);
        _copy.Make();
        await using var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, "not-the-secret-of-this-device", _copy.Folder);
        Assert.Equal(1, await device.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("spa-device: error: wrong secret", device.Stderr);
        Assert.Equal("offline", await State(client, id));
    }

    /// <summary>Registers a real device (offline until a spa-device connects) under a fresh id starting with <paramref name="prefix"/>.</summary>
    internal static async Task<string> Register(HttpClient client, string prefix, string secret)
    {
        var id = prefix + "-" + Guid.NewGuid().ToString("N")[..8];
        await PluginCompletionTests.Send(client, "/v1/devices", JsonSerializer.Serialize(new { device_id = id, secret }), HttpStatusCode.Created);
        return id;
    }

    internal static async Task<string> State(HttpClient client, string id)
    {
        using var response = await client.GetAsync($"/v1/devices/{id}");
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("state").GetString()!;
    }

    private static string Text(JsonElement body) => body.GetProperty("choices")[0].GetProperty("text").GetString()!;
}
