using Spa.Testing;
using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.TestingHost;
using Spa.Grains.Abstractions;
using Spa.Grains.Placement;
using static TorchSharp.torch;

namespace Spa.Grains.Tests;

public sealed class AcceleratorLayoutTests
{
    private static SiloAddress Silo(int port, int generation = 1) => SiloAddress.New(new IPEndPoint(IPAddress.Loopback, port), generation);

    [Fact]
    public void MetadataValuesAreNormalisedAndOrderedByTypeThenIndex()
    {
        Assert.Equal(["cpu", "cuda:2", "cuda:10"], AcceleratorMetadata.Parse(" cuda:10, cuda:2,CUDA:2,cpu"));
        Assert.Empty(AcceleratorMetadata.Parse("none"));
        Assert.Equal("none", AcceleratorMetadata.Format([]));
        Assert.Equal("cuda:0,cuda:1", AcceleratorMetadata.Format(AcceleratorMetadata.Parse("cuda:1,cuda:0")));
        foreach (var bad in new[] { "", " , ", "cdua:0", "cuda:x", "cuda:-1", "cuda:0:1", "1", "none,cpu" })
            Assert.Throws<ArgumentException>(() => AcceleratorMetadata.Parse(bad));
    }

    [Fact]
    public void SlotsFollowSiloAddressThenAcceleratorAndShardsWrapAround()
    {
        var layout = AcceleratorLayout.Build([
            (Silo(11113), ["cpu"]),
            (Silo(11111), ["cuda:1", "cuda:0"]),
            (Silo(11112), []),
        ]);
        Assert.False(layout.CpuFallback);
        Assert.Equal([new(Silo(11111), "cuda:0"), new(Silo(11111), "cuda:1"), new(Silo(11113), "cpu")], layout.Slots);
        Assert.Equal(new AcceleratorSlot(Silo(11111), "cuda:1"), layout.SlotFor(1));
        Assert.Equal(new AcceleratorSlot(Silo(11111), "cuda:1"), layout.SlotFor(4));
    }

    [Fact]
    public void TheEndpointOrdersSilosBeforeTheGeneration()
    {
        // Orleans' own order puts the older generation first; a silo restarted on its endpoint must keep its place.
        var layout = AcceleratorLayout.Build([(Silo(11112, generation: 1), ["cpu"]), (Silo(11111, generation: 2), ["cpu"])]);
        Assert.Equal([Silo(11111, 2), Silo(11112, 1)], layout.Slots.Select(s => s.Silo));
    }

    [Fact]
    public void WithoutAdvertisedAcceleratorsEachSiloCountsItsCpu()
    {
        var layout = AcceleratorLayout.Build([(Silo(11112), []), (Silo(11111), [])]);
        Assert.True(layout.CpuFallback);
        Assert.Equal([new(Silo(11111), "cpu"), new(Silo(11112), "cpu")], layout.Slots);
        Assert.Throws<InvalidOperationException>(() => AcceleratorLayout.Build([]));
    }

    [Fact]
    public void AShardOffItsSlotTakesOneOfItsSilosAccelerators()
    {
        var layout = AcceleratorLayout.Build([(Silo(11111), ["cuda:0", "cuda:1"]), (Silo(11112), ["cuda:0"]), (Silo(11113), [])]);
        Assert.Equal("cuda:0", layout.AcceleratorOn(Silo(11112), 2, out bool asPlaced));
        Assert.True(asPlaced);
        Assert.Equal("cuda:1", layout.AcceleratorOn(Silo(11111), 5, out asPlaced)); // slot 5 % 3 is on 11112; here 5 % 2
        Assert.False(asPlaced);
        Assert.Equal("cpu", layout.AcceleratorOn(Silo(11113), 0, out asPlaced));
        Assert.False(asPlaced);
    }

    [Fact]
    public void OptionsBindFromConfiguration()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Spa:Accelerators:Devices"] = "cuda:1,cuda:0",
            ["Spa:Accelerators:MetadataTimeout"] = "00:00:02",
        }).Build();
        var options = configuration.GetSection(AcceleratorOptions.Section).Get<AcceleratorOptions>()!;
        Assert.Equal(["cuda:0", "cuda:1"], options.Advertised());
        Assert.Equal(TimeSpan.FromSeconds(2), options.MetadataTimeout);
        IReadOnlyList<string> detected = cuda.is_available() ? [.. Enumerable.Range(0, cuda.device_count()).Select(i => $"cuda:{i}")] : ["cpu"];
        Assert.Equal(detected, new AcceleratorOptions().Advertised());
        var bad = Assert.Throws<ArgumentException>(() => new AcceleratorOptions { Devices = "cdua:0" }.Advertised());
        Assert.StartsWith("Spa:Accelerators:Devices: 'cdua:0' is not a torch device", bad.Message);
    }
}

/// <summary>Three silos: Silo_0 advertises two GPUs (listed out of order), Silo_1 none, Silo_2 its CPU.</summary>
public sealed class AcceleratorCluster : ClusterFixture
{
    public static readonly Dictionary<string, string> Devices = new() { ["Silo_0"] = "cuda:1,cuda:0", ["Silo_1"] = "none", ["Silo_2"] = "cpu" };

    protected override long KvCacheBytesPerShard => 16L * 1024 * 1024;
    protected override short Silos => 3;
    protected override string? DevicesOf(string siloName) => Devices[siloName];
}

/// <summary>Two silos that advertise no accelerator.</summary>
public sealed class NoAcceleratorCluster : ClusterFixture
{
    protected override long KvCacheBytesPerShard => 16L * 1024 * 1024;
    protected override short Silos => 2;
    protected override string? DevicesOf(string siloName) => "none";
}

internal static class Placements
{
    /// <summary>Where each shard of an N-way split runs: (silo address, accelerator), asked of the shard grains.</summary>
    public static async Task<(string Silo, string Accelerator)[]> Of(IGrainFactory grains, int shards)
    {
        var placed = new (string, string)[shards];
        for (int k = 0; k < shards; k++)
        {
            var d = await grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", k, shards)).Describe();
            placed[k] = (d.Silo, d.Accelerator);
        }
        return placed;
    }

    /// <summary>The cluster's silos by port (they share one address), as this test spells the placement order.</summary>
    public static InProcessSiloHandle[] ByPort(InProcessTestCluster cluster) => [.. cluster.Silos.OrderBy(s => s.SiloAddress.Endpoint.Port)];

    public static async Task AssertGenerationMatchesTheEngine(IGrainFactory grains, int shards, string sessionPrefix)
    {
        const int tokens = 40;
        for (int i = 0; i < ShardedGenerationTests.Prompts.Length; i++)
        {
            var prompt = Reference.Encode(ShardedGenerationTests.Prompts[i]);
            var session = grains.GetGrain<IDecodingSessionGrain>($"{sessionPrefix}-{shards}-{i}");
            var result = await session.Generate(new GenerationRequest(prompt, tokens) { Shards = shards });
            Assert.Equal(Reference.Greedy(prompt, tokens), result.Tokens);
        }
    }
}

[Collection(ClusterCollection.Name)]
public sealed class AcceleratorPlacementTests(AcceleratorCluster fixture) : IClassFixture<AcceleratorCluster>
{
    /// <summary>The placement order written out by hand: silos by port, each silo's accelerators by type and index.</summary>
    private (string Silo, string Accelerator)[] ExpectedSlots()
    {
        string[] Sorted(string devices) => devices switch
        {
            "cuda:1,cuda:0" => ["cuda:0", "cuda:1"],
            "none" => [],
            var one => [one],
        };
        return [.. Placements.ByPort(fixture.Cluster).SelectMany(s => Sorted(AcceleratorCluster.Devices[s.Name]).Select(a => (s.SiloAddress.ToParsableString(), a)))];
    }

    [Fact]
    public async Task EverySiloSeesTheOthersAcceleratorsInItsSiloMetadataCache()
    {
        var expected = fixture.Cluster.Silos.ToDictionary(s => s.SiloAddress, s => AcceleratorCluster.Devices[s.Name] switch
        {
            "cuda:1,cuda:0" => "cuda:0,cuda:1",
            var devices => devices,
        });
        foreach (var observer in fixture.Cluster.Silos)
        {
            var cache = observer.ServiceProvider.GetRequiredService<ISiloMetadataCache>();
            string? Seen(SiloAddress silo) => cache.GetSiloMetadata(silo).Metadata.GetValueOrDefault(AcceleratorMetadata.Key);
            // The cache fills in the background after membership changes.
            await Eventually.True(() => expected.Keys.All(s => Seen(s) is not null), TimeSpan.FromSeconds(10), "every silo's accelerators in the metadata cache",
                TimeSpan.FromMilliseconds(50));
            foreach (var (silo, devices) in expected) Assert.Equal(devices, Seen(silo));
        }
    }

    [Fact]
    public async Task ShardsGoOnePerAcceleratorOfTheAdvertisingSilos()
    {
        var expected = ExpectedSlots();
        Assert.Equal(3, expected.Length);
        var placed = await Placements.Of(fixture.Grains, 3);
        Assert.Equal(expected, placed);
        Assert.Equal(3, placed.Distinct().Count());
        var silent = fixture.Cluster.Silos.Single(s => AcceleratorCluster.Devices[s.Name] == "none").SiloAddress.ToParsableString();
        Assert.DoesNotContain(placed, p => p.Silo == silent);
        Assert.Equal(2, placed.Select(p => p.Silo).Distinct().Count());
    }

    [Fact]
    public async Task MoreShardsThanAcceleratorsWrapAround()
    {
        var expected = ExpectedSlots();
        var placed = await Placements.Of(fixture.Grains, 5);
        Assert.Equal(Enumerable.Range(0, 5).Select(k => expected[k % expected.Length]), placed);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    public async Task GenerationAcrossTheSilosMatchesTheInProcessEngine(int shards) =>
        await Placements.AssertGenerationMatchesTheEngine(fixture.Grains, shards, "accelerators");

    [Fact]
    public async Task AReactivatedShardReturnsToItsAccelerator()
    {
        var shard = fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", 2, 3));
        var before = await shard.Describe();
        await fixture.Cluster.DeactivateAsync(shard);
        await fixture.Cluster.WaitForDeactivationAsync(shard);
        var after = await shard.Describe();
        Assert.Equal((before.Silo, before.Accelerator), (after.Silo, after.Accelerator));
        Assert.Equal(ExpectedSlots()[2], (after.Silo, after.Accelerator));
    }
}

[Collection(ClusterCollection.Name)]
public sealed class CpuFallbackPlacementTests(NoAcceleratorCluster fixture) : IClassFixture<NoAcceleratorCluster>
{
    [Fact]
    public async Task WithoutAdvertisedAcceleratorsShardsSpreadOverEverySilosCpu()
    {
        var silos = Placements.ByPort(fixture.Cluster).Select(s => s.SiloAddress.ToParsableString()).ToArray();
        Assert.Equal([(silos[0], "cpu"), (silos[1], "cpu")], await Placements.Of(fixture.Grains, 2));
        Assert.Equal([(silos[0], "cpu"), (silos[1], "cpu"), (silos[0], "cpu")], await Placements.Of(fixture.Grains, 3));
    }

    [Fact]
    public async Task GenerationAcrossTheSilosMatchesTheInProcessEngine() =>
        await Placements.AssertGenerationMatchesTheEngine(fixture.Grains, 2, "fallback");
}
