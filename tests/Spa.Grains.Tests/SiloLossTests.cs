using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.TestingHost;
using Spa.Grains.Abstractions;
using Spa.Model.Plugins;
using Spa.Model.Sampling;
using Spa.Testing;
using Xunit.Abstractions;

namespace Spa.Grains.Tests;

/// <summary>
/// Three silos keeping sessions, devices and stream subscriptions in a real Redis server (memory storage would die with
/// the silo that holds it), with membership settings that notice a dead silo within a few seconds. Sessions are written
/// every <see cref="PersistEveryTokens"/> tokens, so that a dead silo takes unwritten tokens with it and the survivors
/// must generate them again, the same ones.
/// </summary>
public sealed class SiloLossCluster : RedisStorageClusterFixture
{
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);
    public const int MissedProbes = 2;
    public const int PersistEveryTokens = 3;

    protected override short Silos => 3;

    protected override void ConfigureSilo(ISiloBuilder silo)
    {
        base.ConfigureSilo(silo);
        silo.Services.Configure<SpaSessionOptions>(sessions => sessions.PersistEveryTokens = PersistEveryTokens);
        silo.Configure<ClusterMembershipOptions>(membership =>
        {
            membership.ProbeTimeout = ProbeTimeout;
            membership.NumMissedProbesLimit = MissedProbes;
        });
    }

    /// <summary>
    /// A client's call in flight to a silo that dies is answered only by its response timeout (30 s by default):
    /// shorter, so that a broken stream is resumed soon. Silo-side callers (the HTTP endpoint) hear of it from membership.
    /// </summary>
    protected override void ConfigureClient(IClientBuilder client) =>
        client.Configure<ClientMessagingOptions>(messaging => messaging.ResponseTimeout = TimeSpan.FromSeconds(5));

    /// <summary>Starts silos until three are active again (an earlier test may have killed one).</summary>
    public async Task RestoreAsync()
    {
        while (Cluster.GetActiveSilos().Count() < Silos) await Cluster.StartAdditionalSiloAsync();
        await Cluster.WaitForClusterManifestToStabilizeAsync();
    }
}

/// <summary>
/// A silo of three dies (killed, or stopped) while generations run on it: greedy in base mode over one to three shards
/// and in a plugin mode with a simulated device, and sampled from a seed. The silo is the one that holds the most of
/// the generations' session activations. Every generation still completes through <see cref="SiloLoss.Generate"/>,
/// token for token equal to the in-process engine, and the stream neither skips nor repeats an index. Sessions on the dead silo re-activate on a
/// survivor from their stored history; sessions whose shard died retry the step and replay into the new shard.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class SiloLossTests(SiloLossCluster fixture, ITestOutputHelper output) : IClassFixture<SiloLossCluster>
{
    private const int Tokens = 160;
    private const int TokensBeforeFault = 12;
    private const string Owner = "alice";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public Task EveryGenerationCompletesIdenticallyWhenASiloIsKilled() =>
        ThroughAFault("killed", silo => fixture.Cluster.KillSiloAsync(silo));

    [Fact]
    public Task EveryGenerationCompletesIdenticallyWhenASiloIsStopped() =>
        ThroughAFault("stopped", silo => fixture.Cluster.StopSiloAsync(silo));

    private sealed record Run(string SessionId, GenerationRequest Request, int[] Expected)
    {
        public List<(int Token, long At)> Received { get; } = [];
        public int Losses;
    }

    private async Task ThroughAFault(string fault, Func<InProcessSiloHandle, Task> inject)
    {
        await fixture.RestoreAsync();
        var prompts = ShardedGenerationTests.Prompts;
        var runs = new List<Run>();
        for (int shards = 1; shards <= 3; shards++)
        {
            var prompt = Reference.Encode(prompts[shards % prompts.Length]);
            runs.Add(new Run($"{fault}-base-{shards}-{Guid.NewGuid():N}", new GenerationRequest(prompt, Tokens) { Shards = shards }, Reference.Greedy(prompt, Tokens)));
        }
        var sampled = Reference.Encode(prompts[2]);
        var sampling = new SamplingOptions { Temperature = 0.9, TopP = 0.9, Seed = 7 };
        runs.Add(new Run($"{fault}-sampled-{Guid.NewGuid():N}",
            new GenerationRequest(sampled, Tokens) { Shards = 2, Sampling = new() { Temperature = sampling.Temperature, TopP = sampling.TopP, Seed = (long)sampling.Seed } },
            Reference.Decode(sampled, Tokens, sampling)));
        var plugin = Reference.Encode(prompts[0]);
        var device = await Devices.Simulated(fixture.Grains, PluginKind.Ladder, Owner);
        runs.Add(new Run($"{fault}-parallel-{Guid.NewGuid():N}",
            new GenerationRequest(plugin, Tokens) { Shards = 2, Plugin = new() { Mode = SessionMode.Parallel, DeviceId = device }, User = Owner },
            PluginGenerationTests.InProcess(RandomPlugin.Of(PluginKind.Ladder), CombinationMode.Parallel, plugin, Tokens).Tokens));

        // Every path warm before the fault's generations start (shard activations, the simulated device's plugin), so that
        // a slow first token cannot leave the fastest generation finished before the others reach TokensBeforeFault.
        foreach (var run in runs)
        {
            var warm = fixture.Grains.GetGrain<IDecodingSessionGrain>($"warm-{run.SessionId}");
            await warm.Generate(run.Request with { MaxTokens = 2 });
            await warm.End();
        }

        var generations = runs.Select(run => Task.Run(async () =>
        {
            var session = fixture.Grains.GetGrain<IDecodingSessionGrain>(run.SessionId);
            await foreach (var token in SiloLoss.Generate(session, run.Request, Deadline, _ => Interlocked.Increment(ref run.Losses)))
                lock (run.Received) run.Received.Add((token.Token, Stopwatch.GetTimestamp()));
        })).ToList();

        // The fault comes when every generation is under way: all have TokensBeforeFault tokens, or all have begun and the
        // fastest (one shard, no device) is halfway, so that none has finished.
        await Eventually.True(async () =>
        {
            if (generations.FirstOrDefault(g => g.IsFaulted) is { } failed) await failed;
            return runs.All(r => Count(r) >= TokensBeforeFault) || (runs.All(r => Count(r) > 0) && runs.Max(Count) >= Tokens / 2);
        }, Deadline, "every generation to get going", TimeSpan.FromMilliseconds(10));
        var victim = await SiloHoldingMostSessions(runs);
        var counts = runs.Select(Count).ToArray();
        long faultAt = Stopwatch.GetTimestamp();
        await inject(victim);
        await Task.WhenAll(generations).WaitAsync(TimeSpan.FromSeconds(90));

        var recoveries = new List<string>();
        foreach (var run in runs)
        {
            Assert.Equal(run.Expected, run.Received.Select(r => r.Token));
            if (Recovery.Milliseconds([.. run.Received.Select(r => r.At)], faultAt) is { } ms) recoveries.Add($"{ms:F0}{(run.Losses > 0 ? " (resumed)" : "")}");
        }
        Assert.True(counts.All(c => c < Tokens), $"a generation had finished before the silo was {fault}: {string.Join(", ", counts)}");
        var sessionsOnVictim = runs.Count(r => r.Losses > 0);
        output.WriteLine($"silo {victim.SiloAddress} {fault} with {string.Join(", ", counts)} tokens received of {Tokens}; " +
                         $"{runs.Count} generations completed identically, {sessionsOnVictim} resumed after a broken stream; " +
                         $"{fault} to the token that ended each stall (ms): {string.Join(", ", recoveries)}");
    }

    private static int Count(Run run)
    {
        lock (run.Received) return run.Received.Count;
    }

    /// <summary>The silo with the most of the runs' session activations (any silo holds shards: there is one per silo).</summary>
    private async Task<InProcessSiloHandle> SiloHoldingMostSessions(List<Run> runs)
    {
        var ids = runs.Select(r => r.SessionId).ToHashSet();
        var statistics = await fixture.Grains.GetGrain<IManagementGrain>(0).GetDetailedGrainStatistics();
        var hosts = statistics.Where(s => ids.Contains(s.GrainId.Key.ToString()!)).GroupBy(s => s.SiloAddress).OrderByDescending(g => g.Count()).ToList();
        var host = Assert.Single(hosts.Take(1)).Key;
        output.WriteLine($"sessions per silo: {string.Join(", ", hosts.Select(g => $"{g.Key}: {g.Count()}"))}");
        return fixture.Cluster.Silos.Single(s => s.SiloAddress.Equals(host));
    }
}
