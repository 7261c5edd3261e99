using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Serialization;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;
using Spa.Grains.Storage;
using Spa.Testing;
using StackExchange.Redis;

namespace Spa.Cli.Tests;

/// <summary>
/// Two real silo processes with <c>--redis</c> against a real Redis server, one <c>spa serve</c> and one the silo
/// program with the same options: they form one cluster, keep
/// its membership table and the session state in Redis, and stop cleanly on SIGTERM. A real <c>spa-device</c> process
/// holding a plugin connects to one silo's gateway, and a request over HTTP to the other silo uses it: the text equals
/// the in-process engine's with that plugin, while no silo ever had the plugin file (the device gets its path, and the
/// test deletes it as soon as the device has loaded it). Runs alone, so that two model loads and decoding are not
/// slowed down by the other tests' processes.
/// </summary>
[Collection(Name)]
public sealed class RedisClusterTests(RedisServer redis) : IClassFixture<RedisServer>
{
    public const string Name = "redis cluster";
    private const string Key = ServeProcess.Key;
    private const string Cluster = "spa"; // the default cluster and service id
    private const int ActiveStatus = 3; // Orleans' SiloStatus.Active, as the membership table stores it

    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SpaServeAndTheSiloProgramFormOneClusterThroughRedis()
    {
        var ports = Ports.Free(6);
        await using var a = ServeProcess.Start(redis.Endpoint, ports[0], ports[1], ports[2]);
        await using var b = ServeProcess.Start(redis.Endpoint, ports[3], ports[4], ports[5], siloProgram: true);
        var silos = new[] { a, b };
        await Task.WhenAll(silos.Select(s => s.WaitUntilHealthy()));

        // Greedy decoding gives the same text whichever silo takes the request: one model, one set of shard grains.
        var texts = new List<string>();
        foreach (var silo in silos) texts.Add(await Complete(silo));
        Assert.False(string.IsNullOrWhiteSpace(texts[0]), "an empty completion");
        Assert.Equal(texts[0], texts[1]);

        await APluginOnADeviceProcessServesThroughTheOtherSilo(a, b, gatewayOfB: ports[5]);

        await using var connection = await redis.ConnectAsync();
        var db = connection.GetDatabase();
        Assert.Equal(silos.Select(s => s.SiloPort).Order(), await ActiveSiloPorts(db));
        // The sessions of the three HTTP requests are kept for the retention period, to be read back or resumed.
        Assert.Equal(3, (await StateKeys(connection, "decodingsession")).Count);

        await SessionStateIsKeptInRedis(db, connection);

        // SIGTERM: each stops cleanly, leaving the cluster.
        foreach (var silo in silos)
        {
            int exit = await silo.Process.TerminateAsync(StopTimeout);
            Assert.True(exit == 0, $"exit code {exit} after SIGTERM\n{silo.Process}");
        }
        Assert.Empty(await ActiveSiloPorts(db));
    }

    private static async Task APluginOnADeviceProcessServesThroughTheOtherSilo(ServeProcess a, ServeProcess b, int gatewayOfB)
    {
        const string secret = "redis-cluster-device-secret";
        var expected = RandomPlugin.ParallelText("Once upon a time", 30);
        using (var plugin = new PluginCopy())
        {
            plugin.Make();
            var register = await Spa.RunAsync("device", "register", "--url", a.Http.BaseAddress!.ToString(), "--api-key", Key, "--device-id", "phone-1", "--secret", secret);
            Assert.True(register.ExitCode == 0, register.ToString());
            Assert.Contains("device phone-1 registered for user default (offline)", register.Stdout);
            await using var device = SpaDevice.Start($"127.0.0.1:{gatewayOfB}", "phone-1", secret, plugin.Folder);
            await device.WaitForOutputAsync(SpaDevice.ConnectedLine, ServeProcess.StartTimeout);
            plugin.Dispose(); // the plugin now lives only in the device's memory

            using var response = await a.Http.PostAsJsonAsync("/v1/completions",
                new { prompt = "Once upon a time", max_tokens = 30, spa = new { mode = "parallel", device_id = "phone-1", fallback = "fail" } });
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}\n{a.Process}\n{device}");
            var root = JsonDocument.Parse(body).RootElement;
            Assert.Equal(expected, root.GetProperty("choices")[0].GetProperty("text").GetString());
            var spa = root.GetProperty("spa");
            Assert.Equal(spa.GetProperty("generated_tokens").GetInt64(), spa.GetProperty("transmissions").GetInt64()); // parallel: M = 1
            Assert.False(spa.GetProperty("degraded").GetBoolean());
            Assert.Contains("connected", await (await b.Http.GetAsync("/v1/devices/phone-1")).Content.ReadAsStringAsync());
            Assert.Equal(0, await device.TerminateAsync(StopTimeout)); // a clean stop disconnects
        }
    }

    /// <summary>A session run through the cluster by an Orleans client writes its history to Redis; ending it removes it.</summary>
    private async Task SessionStateIsKeptInRedis(IDatabase db, IConnectionMultiplexer connection)
    {
        using var host = ServeProcess.Client(redis.Endpoint);
        await host.StartAsync();
        try
        {
            var session = host.Services.GetRequiredService<IClusterClient>().GetGrain<IDecodingSessionGrain>("redis-session");
            int[] prompt = [1]; // BOS
            var result = await session.Generate(new GenerationRequest(prompt, 12) { Shards = 1, Model = "stories260K" });
            Assert.Equal(12, result.Tokens.Length);

            var key = Assert.Single(await StateKeys(connection, "decodingsession/redis-session"));
            var data = (byte[]?)await db.HashGetAsync(key, "data");
            Assert.False(data is null or [], $"no session state under {key}");
            Assert.Equal(StoredStateSerializer.BinaryMark, data[0]);
            Assert.Equal([.. prompt, .. result.Tokens], StoredSession(data[1..]).History);

            await session.End();
            Assert.False(await db.KeyExistsAsync(key), $"{key} is still there after the session ended");
        }
        finally
        {
            await host.StopAsync();
        }
    }

    /// <summary>A session's state in Orleans' binary format, read by a serializer that knows the state types.</summary>
    private static SessionState StoredSession(byte[] binary)
    {
        using var services = new ServiceCollection().AddSerializer(types => types.AddAssembly(typeof(SessionState).Assembly)).BuildServiceProvider();
        return services.GetRequiredService<Serializer>().Deserialize<SessionState>(binary)!;
    }

    private static async Task<string> Complete(ServeProcess silo)
    {
        using var response = await silo.Http.PostAsJsonAsync("/v1/completions", new { prompt = "Once upon a time", max_tokens = 40 });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}\n{silo.Process}");
        return JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    /// <summary>The silo ports of the rows of the cluster's membership table (a Redis hash) whose silo is active.</summary>
    private static async Task<int[]> ActiveSiloPorts(IDatabase db)
    {
        var rows = await db.HashGetAllAsync($"{Cluster}/members/{Cluster}");
        Assert.NotEmpty(rows); // the table exists: at least its version row
        return [.. rows.Where(row => row.Name != "Version")
            .Select(row => JsonDocument.Parse((string)row.Value!).RootElement)
            .Where(entry => entry.GetProperty("Status").GetInt32() == ActiveStatus)
            .Select(entry => SiloAddress.FromParsableString(entry.GetProperty("SiloAddress").GetProperty("SiloAddress").GetString()!).Endpoint.Port)
            .Order()];
    }

    /// <summary>The grain-state keys of the service that start with <paramref name="grain"/> ("type/key").</summary>
    private static async Task<List<RedisKey>> StateKeys(IConnectionMultiplexer connection, string grain)
    {
        var keys = new List<RedisKey>();
        await foreach (var key in connection.GetServers().Single().KeysAsync(pattern: $"{Cluster}/state/{grain}*")) keys.Add(key);
        return keys;
    }
}

[CollectionDefinition(RedisClusterTests.Name, DisableParallelization = true)]
public sealed class RedisClusterCollection;
