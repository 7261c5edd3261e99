using System.Net;
using System.Text.Json;
using Spa.Grains;

namespace Spa.Silo.Tests;

/// <summary>
/// One user's device is out of another user's reach: no mode uses it, streaming or not, and neither a plain nor a
/// simulated re-registration takes it over. Reading another user's device (403) and a device's wrong secret are
/// tested in <see cref="PluginCompletionTests"/> and <see cref="ConnectedDeviceTests"/>.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class IsolationTests(ServerFixture server)
{
    [Fact]
    public async Task NoModeUsesAnotherUsersDevice()
    {
        using var alice = server.Client();
        using var bob = server.Client(ServerFixture.OtherKey);
        var id = "iso-" + Guid.NewGuid().ToString("N")[..8];
        await PluginCompletionTests.Send(alice, "/v1/devices",
            JsonSerializer.Serialize(new { device_id = id, simulated = new { plugin_dir = RandomPlugin.Ladder, profile = "local" } }), HttpStatusCode.Created);
        foreach (var mode in SessionModes.All.Where(m => m != SessionModes.Base))
            foreach (var stream in new[] { false, true })
            {
                var error = (await PluginCompletionTests.Send(bob, "/v1/completions",
                    JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 2, stream, spa = new { mode, device_id = id, fallback = "base" } }),
                    HttpStatusCode.Forbidden)).GetProperty("error");
                Assert.Equal("device_forbidden", error.GetProperty("code").GetString());
            }
    }

    [Fact]
    public async Task AnotherUserCannotTakeOverADeviceId()
    {
        using var alice = server.Client();
        using var bob = server.Client(ServerFixture.OtherKey);
        var id = "iso-" + Guid.NewGuid().ToString("N")[..8];
        await PluginCompletionTests.Send(alice, "/v1/devices",
            JsonSerializer.Serialize(new { device_id = id, simulated = new { plugin_dir = RandomPlugin.Ladder } }), HttpStatusCode.Created);

        await PluginCompletionTests.Send(bob, "/v1/devices", JsonSerializer.Serialize(new { device_id = id, secret = "bobs-own-secret-0123456789" }), HttpStatusCode.Forbidden);
        await PluginCompletionTests.Send(bob, "/v1/devices",
            JsonSerializer.Serialize(new { device_id = id, simulated = new { plugin_dir = RandomPlugin.Ladder, profile = "local" } }), HttpStatusCode.Forbidden);

        // Still alice's, still the simulated device she registered.
        using var response = await alice.GetAsync($"/v1/devices/{id}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var device = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(ApiKeys.DefaultUser, device.GetProperty("owner").GetString());
        Assert.Equal("simulated", device.GetProperty("state").GetString());
        Assert.Equal(HttpStatusCode.Forbidden, (await bob.GetAsync($"/v1/devices/{id}")).StatusCode);
    }
}
