using System.Net;
using System.Text.Json;
using Spa.Grains.Abstractions;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// One user's sessions and devices are out of another user's reach. A session: reading it, resuming it (whole or
/// streamed) and deleting it answer 404 as for an id never issued, and leave it as it was. A device: no mode uses it,
/// streaming or not, and neither a plain nor a simulated re-registration takes it over. Reading another user's device (403) and a device's wrong secret are
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
        var id = await PluginCompletionTests.SimulatedDevice(alice, "iso", RandomPlugin.Ladder);
        foreach (var mode in SessionModes.All.Where(m => m != SessionMode.Base).Select(WireNames.Of))
            foreach (var stream in new[] { false, true })
            {
                var error = (await PluginCompletionTests.Send(bob, "/v1/completions",
                    JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 2, stream, spa = new { mode, device_id = id, fallback = "base" } }),
                    HttpStatusCode.Forbidden)).GetProperty("error");
                Assert.Equal("device_forbidden", error.GetProperty("code").GetString());
            }
    }

    [Fact]
    public async Task AnotherUsersSessionCannotBeReadResumedStreamedOrDeleted()
    {
        using var alice = server.Client();
        using var bob = server.Client(ServerFixture.OtherKey);
        var (id, text) = await SessionsApiTests.Complete(alice, "The little dog", 8);

        var refused = (await SessionsApiTests.Read(bob, id, HttpStatusCode.NotFound)).GetProperty("error");
        Assert.Equal("session_not_found", refused.GetProperty("code").GetString());
        foreach (var stream in new[] { false, true })
            await PluginCompletionTests.Send(bob, $"/v1/sessions/{id}/resume", JsonSerializer.Serialize(new { max_tokens = 4, stream }), HttpStatusCode.NotFound);
        using (var deleted = await bob.DeleteAsync($"/v1/sessions/{id}")) Assert.Equal(HttpStatusCode.NotFound, deleted.StatusCode);

        var stored = await SessionsApiTests.Read(alice, id);
        Assert.Equal(8, stored.GetProperty("generated_tokens").GetInt32());
        Assert.Equal(text, stored.GetProperty("text").GetString());
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
