using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;
using Spa.Testing;

namespace Spa.Grains.Tests;

/// <summary>
/// A cluster whose sessions and token streams are released after <see cref="IdleLifetime"/> idle, with a collection
/// quantum short enough that the collector runs several times within it (Orleans' default quantum is a minute).
/// </summary>
public sealed class ShortIdleLifetimeCluster : ClusterFixture
{
    public static readonly TimeSpan IdleLifetime = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan CollectionQuantum = TimeSpan.FromSeconds(1);
    public const int DirectoryCacheEntries = 1_000;

    protected override long KvCacheBytesPerShard => 64L * 1024 * 1024;

    protected override void ConfigureSilo(ISiloBuilder silo)
    {
        base.ConfigureSilo(silo);
        silo.UseInMemoryReminderService(); // a released session sets a reminder to delete its history after its retention
        silo.Services.Configure<SpaSessionOptions>(sessions =>
            (sessions.IdleLifetimeMinutes, sessions.DirectoryCacheEntries) = (IdleLifetime.TotalMinutes, DirectoryCacheEntries));
        silo.Services.Configure<GrainCollectionOptions>(collection => collection.CollectionQuantum = CollectionQuantum);
    }
}

/// <summary>
/// Every completion leaves a session activation and, for its token stream, a pub-sub rendezvous activation (Orleans'
/// own class, whose collection age is set by its name). Both must be gone once they have been idle for the sessions'
/// idle lifetime: otherwise every request leaves them behind for Orleans' default collection age, and a sustained load
/// grows without bound (the soak in docs/reliability.md).
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class IdleLifetimeTests(ShortIdleLifetimeCluster fixture) : IClassFixture<ShortIdleLifetimeCluster>
{
    private const int Completions = 8;
    private const int Tokens = 8;

    /// <summary>The grain directory cache gains a location per session and per stream rendezvous, so its size is the sessions' option.</summary>
    [Fact]
    public void TheGrainDirectoryCacheHoldsAtMostTheSessionsOptionsEntries() =>
        Assert.Equal(ShortIdleLifetimeCluster.DirectoryCacheEntries,
            fixture.Cluster.Silos[0].SiloHost.Services.GetRequiredService<IOptions<GrainDirectoryOptions>>().Value.CacheSize);

    [Fact]
    public async Task FinishedSessionsAndTheirStreamRendezvousAreDeactivatedAfterTheIdleLifetime()
    {
        var prompt = Reference.Encode("Once upon a time");
        var expected = Reference.Greedy(prompt, Tokens);
        for (int i = 0; i < Completions; i++)
        {
            var session = fixture.Grains.GetGrain<IDecodingSessionGrain>($"idle-{i}");
            Assert.Equal(expected, (await session.Generate(new GenerationRequest(prompt, Tokens))).Tokens);
            await session.Release();
        }

        var management = fixture.Grains.GetGrain<IManagementGrain>(0);
        // The stream's pulling agent registers with the rendezvous when it reads the stream's first token, shortly after
        // the completion. The count is by class name: a renamed Orleans class would leave nothing to count here rather
        // than pass below.
        await Eventually.Until(() => Activations(management), active => active.Sessions >= Completions && active.Rendezvous >= Completions,
            TimeSpan.FromSeconds(5), $"{Completions} sessions and stream rendezvous active after the completions");

        // A stream's rendezvous is last touched when the pulling agent drops the stream after the idle lifetime, so it
        // goes after twice that, plus up to a quantum for each collection and for the agent's own check.
        await Eventually.Until(() => Activations(management), active => active == (0, 0), 2 * ShortIdleLifetimeCluster.IdleLifetime + TimeSpan.FromSeconds(20),
            $"no session or stream rendezvous active {ShortIdleLifetimeCluster.IdleLifetime.TotalSeconds} s after their last use (plus margin)",
            TimeSpan.FromMilliseconds(500));
    }

    private static async Task<(int Sessions, int Rendezvous)> Activations(IManagementGrain management)
    {
        var statistics = await management.GetSimpleGrainStatistics();
        // GrainType is "class full name,assembly name".
        int Count(string grainClass) => statistics.Where(s => s.GrainType.Split(',')[0] == grainClass).Sum(s => s.ActivationCount);
        return (Count(typeof(DecodingSessionGrain).FullName!), Count(SpaGrainsHosting.PubSubRendezvousGrainClass));
    }
}
