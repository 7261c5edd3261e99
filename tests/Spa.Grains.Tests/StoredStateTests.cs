using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Orleans.TestingHost;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;

namespace Spa.Grains.Tests;

/// <summary>Reading stored state through the silo's storage serializer.</summary>
[Collection(ClusterCollection.Name)]
public sealed class StoredStateTests(DefaultBudgetCluster fixture) : IClassFixture<DefaultBudgetCluster>
{
    [Fact]
    public void ReadingASessionLeavesTheSharedDefaultsAlone()
    {
        var serializer = ((InProcessSiloHandle)fixture.Cluster.Silos[0]).SiloHost.Services.GetRequiredService<IGrainStorageSerializer>();
        var request = new GenerationRequest([1, 2, 3], 4)
        {
            Sampling = new() { Temperature = 0.7, Seed = 3 },
            Plugin = new() { Mode = SessionMode.Spa, DeviceId = "phone", Tau = 0.4 },
        };
        var stored = new SessionState
        {
            Request = request,
            Edge = EdgeTotals.None.Add(new EdgeUsage(15, 100, 10, 1.5, 2.5, false), asked: true),
        };

        var read = serializer.Deserialize<SessionState>(serializer.Serialize(stored))!;

        Assert.Equal(stored.Edge, read.Edge);
        Assert.Equal(request.Sampling, read.Request!.Sampling);
        Assert.Equal(request.Plugin, read.Request.Plugin);
        Assert.Equal(new EdgeTotals(), EdgeTotals.None);
        Assert.Equal(new SamplingSettings(), SamplingSettings.Greedy);
        Assert.Equal(new PluginChoice(), PluginChoice.None);
    }
}
