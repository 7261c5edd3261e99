using Microsoft.Extensions.Configuration;
using Orleans.TestingHost;
using Spa.Grains.Abstractions;
using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Sampling;
using Spa.Testing;
using Spa.Model.Tokenizers;

namespace Spa.Grains.Tests;

/// <summary>
/// An in-process cluster serving stories260K, with memory storage for sessions and accelerator placement. Subclasses
/// pick the KV-cache budget of each shard grain, and may pick more silos and what accelerators each advertises.
/// </summary>
public abstract class ClusterFixture : IAsyncLifetime
{
    public InProcessTestCluster Cluster { get; private set; } = null!;
    public IGrainFactory Grains => Cluster.Client;

    protected abstract long KvCacheBytesPerShard { get; }

    protected virtual short Silos => 1;

    /// <summary>Spa:Accelerators:Devices of the silo named <paramref name="siloName"/> ("Silo_0", ...); null: its default.</summary>
    protected virtual string? DevicesOf(string siloName) => null;

    /// <summary>Grain storage for sessions, devices and stream subscriptions, and anything else a cluster needs of its silos.</summary>
    protected virtual void ConfigureSilo(ISiloBuilder silo) => silo.AddSpaMemoryStorage();

    protected virtual void ConfigureClient(IClientBuilder client)
    {
    }

    public virtual async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(Silos);
        long budget = KvCacheBytesPerShard;
        builder.ConfigureSilo((options, silo) =>
        {
            silo.AddSpaModel(o =>
            {
                o.ModelPath = SharedData.Stories260K;
                o.KvCacheBytesPerShard = budget;
            });
            var configuration = new ConfigurationBuilder().AddConfiguration(silo.Configuration);
            if (DevicesOf(options.SiloName) is { } devices)
                configuration.AddInMemoryCollection([new($"{Placement.AcceleratorOptions.Section}:Devices", devices)]);
            silo.AddAcceleratorPlacement(configuration.Build());
            ConfigureSilo(silo);
        });
        builder.ConfigureClient(client =>
        {
            client.AddMemoryStreams(TokenStreams.Provider);
            ConfigureClient(client);
        });
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        // A silo places shards only on the silos its cluster manifest lists; deployment waits for membership alone.
        if (Silos > 1) await Cluster.WaitForClusterManifestToStabilizeAsync();
    }

    public virtual async Task DisposeAsync() => await Cluster.DisposeAsync();
}

public sealed class DefaultBudgetCluster : ClusterFixture
{
    protected override long KvCacheBytesPerShard => 64L * 1024 * 1024;
}

/// <summary>
/// A budget that gives the 2-layer shard of a 2-shard split two session slots and the 3-layer shard one
/// (stories260K: 512 positions x 4 KV heads x 8 dims x fp32 x keys and values = 128 KiB per layer and slot).
/// </summary>
public sealed class SmallBudgetCluster : ClusterFixture
{
    public const long BytesPerLayerSlot = 2L * 512 * 4 * 8 * 4;
    protected override long KvCacheBytesPerShard => 4 * BytesPerLayerSlot;
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection
{
    public const string Name = "cluster"; // one cluster at a time: the machine has few cores
}

/// <summary>The in-process engine's greedy output, the reference the cluster must reproduce token for token.</summary>
public static class Reference
{
    private static readonly Lazy<LlamaModel> Model = new(() => LlamaModel.Load(SharedData.Stories260K, new ModelOptions()));
    private static readonly Lazy<ITokenizer> Tokenizer = new(() => TokenizerLoader.Load(SharedData.Tok512, 512));
    private static readonly object Gate = new();

    public static int[] Encode(string text) => [.. Tokenizer.Value.Encode(text, bos: true, eos: false)];

    /// <summary>Runs <paramref name="work"/> with the reference model, one caller at a time.</summary>
    public static T WithModel<T>(Func<LlamaModel, T> work)
    {
        lock (Gate) return work(Model.Value);
    }

    public static int[] Greedy(int[] prompt, int maxTokens) => Decode(prompt, maxTokens, SamplingOptions.Greedy);

    public static int[] Decode(int[] prompt, int maxTokens, SamplingOptions sampling)
    {
        lock (Gate)
            return [.. new Generator(Model.Value).Decode(prompt, maxTokens, sampling).Select(t => t.Id)];
    }
}
