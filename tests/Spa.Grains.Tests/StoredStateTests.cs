using Microsoft.Extensions.DependencyInjection;
using Orleans.Serialization;
using Orleans.Storage;
using Orleans.TestingHost;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;
using Spa.Grains.Storage;
using Xunit.Abstractions;

namespace Spa.Grains.Tests;

/// <summary>Writing and reading stored state through the serializer of the silo's session storage.</summary>
[Collection(ClusterCollection.Name)]
public sealed class StoredStateTests(DefaultBudgetCluster fixture, ITestOutputHelper output) : IClassFixture<DefaultBudgetCluster>
{
    private IServiceProvider Services => ((InProcessSiloHandle)fixture.Cluster.Silos[0]).SiloHost.Services;

    /// <summary>What the session storage writes and reads.</summary>
    private IGrainStorageSerializer Stored => Services.GetRequiredKeyedService<IGrainStorageSerializer>(SpaGrainsHosting.SessionStorage);

    /// <summary>Orleans' default, Json.NET: what earlier versions wrote.</summary>
    private IGrainStorageSerializer Json => Services.GetRequiredService<IGrainStorageSerializer>();

    [Fact]
    public void ReadingASessionLeavesTheSharedDefaultsAlone()
    {
        var stored = Session(tokens: 3);
        foreach (var written in new[] { Stored.Serialize(stored), Json.Serialize(stored) })
        {
            var read = Stored.Deserialize<SessionState>(written)!;

            Assert.Equal(stored.Edge, read.Edge);
            Assert.Equal(stored.Request!.Sampling, read.Request!.Sampling);
            Assert.Equal(stored.Request.Plugin, read.Request.Plugin);
            Assert.Equal(new EdgeTotals(), EdgeTotals.None);
            Assert.Equal(new SamplingSettings(), SamplingSettings.Greedy);
            Assert.Equal(new PluginChoice(), PluginChoice.None);
        }
    }

    [Fact]
    public void ASessionIsWrittenInOrleansBinaryFormatSmallerThanJson()
    {
        var session = Session(tokens: 128);
        var written = Stored.Serialize(session).ToMemory();
        int json = Json.Serialize(session).ToMemory().Length;
        output.WriteLine($"a session of {session.History.Count} tokens: {written.Length} bytes stored, {json} as JSON");

        Assert.Equal(StoredStateSerializer.BinaryMark, written.Span[0]);
        var read = Services.GetRequiredService<Serializer>().Deserialize<SessionState>(written[1..])!;
        Assert.Equal(session.History, read.History);
        Assert.Equal(session.Request!.PromptTokens, read.Request!.PromptTokens);
        Assert.True(written.Length < json, $"{written.Length} bytes stored against {json} as JSON");
    }

    [Fact]
    public void StateAnEarlierVersionWroteAsJsonIsRead()
    {
        var session = Session(tokens: 20);
        var device = new EdgeDeviceState { Owner = "alice", SecretSalt = [1, 2, 3], SecretHash = [4, 5, 6, 7], Model = "stories260K" };

        var readSession = Stored.Deserialize<SessionState>(Json.Serialize(session))!;
        var readDevice = Stored.Deserialize<EdgeDeviceState>(Json.Serialize(device))!;

        Assert.Equal(session.History, readSession.History);
        Assert.Equal(session.Request!.PromptTokens, readSession.Request!.PromptTokens);
        Assert.Equal((session.Request.MaxTokens, session.Request.Sampling, session.Request.Plugin),
            (readSession.Request.MaxTokens, readSession.Request.Sampling, readSession.Request.Plugin));
        Assert.Equal(session.Edge, readSession.Edge);
        Assert.Equal((device.Owner, device.Model), (readDevice.Owner, readDevice.Model));
        Assert.Equal(device.SecretSalt, readDevice.SecretSalt);
        Assert.Equal(device.SecretHash, readDevice.SecretHash);
    }

    [Fact]
    public void DuringARollingUpgradeTheNewVersionWritesJsonAndReadsBothFormats()
    {
        var writingJson = new StoredStateSerializer(Services.GetRequiredService<Serializer>(), Json, StoredStateFormat.Json);
        var session = Session(tokens: 20);

        var written = writingJson.Serialize(session);
        Assert.Equal(Json.Serialize(session).ToArray(), written.ToArray()); // what a silo of the earlier version reads
        foreach (var reader in new[] { writingJson, Stored })
        {
            Assert.Equal(session.History, reader.Deserialize<SessionState>(written)!.History);
            Assert.Equal(session.History, reader.Deserialize<SessionState>(Stored.Serialize(session))!.History);
        }
    }

    /// <summary>A session of a sampled SPA request with <paramref name="tokens"/> tokens of history.</summary>
    private static SessionState Session(int tokens)
    {
        var request = new GenerationRequest([1, 2, 3], 4)
        {
            Sampling = new() { Temperature = 0.7, Seed = 3 },
            Plugin = new() { Mode = SessionMode.Spa, DeviceId = "phone", Tau = 0.4 },
        };
        return new SessionState
        {
            Request = request,
            History = [.. Enumerable.Range(0, tokens).Select(i => (i * 37) % 512)],
            Edge = EdgeTotals.None.Add(new EdgeUsage(15, 100, 10, 1.5, 2.5, false), asked: true),
        };
    }
}
