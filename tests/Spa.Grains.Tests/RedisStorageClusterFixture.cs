using Spa.Testing;
using StackExchange.Redis;

namespace Spa.Grains.Tests;

/// <summary>
/// A cluster whose silos keep sessions, devices and stream subscriptions in a real Redis server as the multi-host silo
/// does (<see cref="SpaGrainsHosting.AddSpaRedisStorage(ISiloBuilder, ConfigurationOptions)"/>): an ended session, and
/// its stream's state, leave no key behind.
/// </summary>
public abstract class RedisStorageClusterFixture : ClusterFixture
{
    private readonly RedisServer _redis = new();

    protected override long KvCacheBytesPerShard => 64L * 1024 * 1024;

    protected override void ConfigureSilo(ISiloBuilder silo) => silo.AddSpaRedisStorage(ConfigurationOptions.Parse(_redis.Endpoint));

    public override async Task InitializeAsync()
    {
        await _redis.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await _redis.DisposeAsync();
    }
}

/// <summary>One silo on Redis storage.</summary>
public sealed class RedisStorageCluster : RedisStorageClusterFixture;
