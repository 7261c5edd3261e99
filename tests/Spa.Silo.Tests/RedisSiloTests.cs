using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Spa.Grains;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;
using Spa.Grains.Storage;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>A silo host built with Redis (in this process, against a real Redis server): state and membership live there.</summary>
public sealed class RedisSiloTests(RedisServer redis) : IClassFixture<RedisServer>
{
    private const string ClusterId = "silo-tests";

    [Fact]
    public async Task SessionStateAndMembershipLiveInRedis()
    {
        var ports = Ports.Free(2);
        var app = SiloHost.Build(new SiloHostOptions
        {
            Model = SharedData.Stories260K,
            Http = "127.0.0.1:0",
            ApiKey = "k",
            Redis = redis.Endpoint,
            SiloPort = ports[0],
            GatewayPort = ports[1],
            ClusterId = ClusterId,
        });
        await using var connection = await redis.ConnectAsync();
        var db = connection.GetDatabase();
        await using (app)
        {
            await app.StartAsync();
            try
            {
                var members = await db.HashGetAllAsync($"spa/members/{ClusterId}");
                var silo = JsonDocument.Parse((string)Assert.Single(members, m => m.Name != "Version").Value!).RootElement;
                Assert.Equal($"127.0.0.1:{ports[0]}", silo.GetProperty("SiloAddress").GetProperty("SiloAddress").GetString()!.Split('@')[0]);
                Assert.Equal(ports[1], silo.GetProperty("ProxyPort").GetInt32());

                var session = app.Services.GetRequiredService<IGrainFactory>().GetGrain<IDecodingSessionGrain>("in-redis");
                var result = await session.Generate(new GenerationRequest([1], 8) { Shards = 1, Model = "stories260K" });
                var key = "spa/state/decodingsession/in-redis/session";
                var data = (byte[]?)await db.HashGetAsync(key, "data");
                Assert.False(data is null or [], $"no state under {key}");
                Assert.Equal(StoredStateSerializer.BinaryMark, data[0]);
                var stored = app.Services.GetRequiredKeyedService<IGrainStorageSerializer>(SpaGrainsHosting.SessionStorage).Deserialize<SessionState>(new BinaryData(data));
                Assert.Equal([1, .. result.Tokens], stored!.History);

                await session.End();
                Assert.False(await db.KeyExistsAsync(key), "an ended session left its state behind");
            }
            finally
            {
                await app.StopAsync();
            }
        }
    }
}
