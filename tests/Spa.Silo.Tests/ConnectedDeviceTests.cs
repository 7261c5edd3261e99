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
    private readonly string _copy = Path.Combine(Path.GetTempPath(), $"spa-device-plugin-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_copy)) Directory.Delete(_copy, recursive: true);
    }

    private static string Request(string mode, string device, string fallback = "base") =>
        JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 24, spa = new { mode, device_id = device, fallback } });

    [Fact]
    public async Task ADeviceProcessServesItsPluginFallsBackWhenKilledAndServesAgainWhenBack()
    {
        using var client = server.Client();
        // The reference: a simulated device with the same plugin.
        var simulated = "sim-" + Guid.NewGuid().ToString("N")[..8];
        await PluginCompletionTests.Send(client, "/v1/devices",
            JsonSerializer.Serialize(new { device_id = simulated, simulated = new { plugin_dir = LadderPlugin.Directory } }), HttpStatusCode.Created);
        var expected = await PluginCompletionTests.Send(client, "/v1/completions", Request("parallel", simulated), HttpStatusCode.OK);
        var baseline = await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 24 }), HttpStatusCode.OK);
        Assert.NotEqual(Text(baseline), Text(expected)); // the plugin changes the text, so equal texts below mean it was used

        var id = "real-" + Guid.NewGuid().ToString("N")[..8];
        await PluginCompletionTests.Send(client, "/v1/devices", JsonSerializer.Serialize(new { device_id = id, secret = Secret }), HttpStatusCode.Created);
        CopyPlugin();
        await using (var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, Secret, _copy))
        {
            await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
            Directory.Delete(_copy, recursive: true); // from here on the plugin exists only in the device's memory
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

        CopyPlugin();
        await using (var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, Secret, _copy))
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
        var id = "wrong-" + Guid.NewGuid().ToString("N")[..8];
        await PluginCompletionTests.Send(client, "/v1/devices", JsonSerializer.Serialize(new { device_id = id, secret = Secret }), HttpStatusCode.Created);
        CopyPlugin();
        await using var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, "not-the-secret-of-this-device", _copy);
        Assert.Equal(1, await device.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("spa-device: error: wrong secret", device.Stderr);
        Assert.Equal("offline", await State(client, id));
    }

    private void CopyPlugin() => CopyPlugin(_copy);

    /// <summary>The test plugin copied to <paramref name="folder"/>, which a test deletes once the device holds it.</summary>
    internal static void CopyPlugin(string folder)
    {
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(LadderPlugin.Directory)) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)), overwrite: true);
    }

    internal static async Task<string> State(HttpClient client, string id)
    {
        using var response = await client.GetAsync($"/v1/devices/{id}");
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("state").GetString()!;
    }

    private static string Text(JsonElement body) => body.GetProperty("choices")[0].GetProperty("text").GetString()!;
}
