using Orleans.Streams;
using Spa.Edge;
using Spa.Grains.Abstractions;
using Spa.Model.Plugins;
using Spa.Model.Sampling;
using Spa.Testing;
using Xunit.Abstractions;
using Generator = Spa.Model.Generation.Generator;

namespace Spa.Grains.Tests;

/// <summary>
/// Plugins with random weights (nothing is trained) saved to temporary directories and registered on simulated edge
/// devices; generation through the cluster in every mode must equal the in-process <see cref="PluginStepper"/> token for
/// token, and M and the bytes must come from the device grain's real calls.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class PluginGenerationTests(DefaultBudgetCluster fixture, ITestOutputHelper output) : IClassFixture<DefaultBudgetCluster>
{
    private const int Tokens = 24;
    private const double GateTau = 0.5;
    private const string Owner = "alice";
    private static readonly int[] Prompt = Reference.Encode("Once upon a time");

    public static TheoryData<SessionMode, int> ModesAndShards()
    {
        var data = new TheoryData<SessionMode, int>();
        foreach (var mode in SessionModes.All.Where(m => m != SessionMode.Base))
            foreach (var shards in new[] { 1, 2, 5 })
                data.Add(mode, shards);
        return data;
    }

    [Theory]
    [MemberData(nameof(ModesAndShards))]
    public async Task GreedyWithAPluginThroughTheClusterMatchesTheInProcessStepper(SessionMode mode, int shards)
    {
        var kind = PluginFor(mode);
        var deviceId = await Devices.Simulated(fixture.Grains, kind, Owner);
        var device = fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId);
        var combination = mode.IsSplit() ? CombinationMode.Parallel : mode.ToCombination();
        var expected = InProcess(RandomPlugin.Of(kind), combination, Prompt, Tokens);
        if (mode is SessionMode.Parallel or SessionMode.Lora or SessionMode.Adapter)
            Assert.NotEqual(Reference.Greedy(Prompt, Tokens), expected.Tokens); // the plugin matters

        var before = await device.GetStats();
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>($"plugin-{mode}-{shards}");
        var result = await session.Generate(With(Tokens, mode, deviceId, mode.IsGated() ? GateTau : null) with { Shards = shards });
        var after = await device.GetStats();
        await session.End();

        Assert.Equal(expected.Tokens, result.Tokens);
        Assert.Equal(mode, result.Mode);
        Assert.Equal(result.Tokens.Length, result.GeneratedTokens);
        Assert.False(result.Degraded);
        var edge = result.Edge;
        Assert.Equal(expected.RoundTrips, edge.Transmissions);
        Assert.Equal(after.RoundTrips - before.RoundTrips, edge.Transmissions);
        Assert.Equal(expected.BytesUp, edge.BytesUp);
        Assert.Equal(expected.BytesDown, edge.BytesDown);
        Assert.Equal(after.BytesUp - before.BytesUp, edge.BytesUp);
        Assert.Equal(after.BytesDown - before.BytesDown, edge.BytesDown);
        int layers = Reference.WithModel(m => m.Config.Layers);
        double expectedM = mode switch
        {
            SessionMode.Lora => layers,
            SessionMode.Adapter => 2 * layers,
            SessionMode.Side or SessionMode.Parallel => 1,
            _ => (double)expected.RoundTrips / Tokens,
        };
        Assert.Equal(expectedM, result.M, 9);
        if (mode.IsGated()) Assert.InRange(edge.Transmissions, 1, Tokens - 1); // the gate sends some tokens and keeps others
        Assert.Equal(mode.IsGated() ? edge.Transmissions : Tokens, edge.EdgeTokens);
        output.WriteLine($"{mode}, {shards} shard(s): M = {result.M:F3}, {edge.BytesUp / (double)Tokens:F0} B up and {edge.BytesDown / (double)Tokens:F0} B down per token");
    }

    [Fact]
    public async Task EveryTokenIsPublishedOnTheSessionsStream()
    {
        var deviceId = await Devices.Simulated(fixture.Grains, PluginKind.Ladder, Owner);
        var sessionId = "plugin-stream";
        var received = new List<TokenEvent>();
        var done = new TaskCompletionSource();
        var stream = fixture.Cluster.Client.GetStreamProvider(TokenStreams.Provider).GetStream<TokenEvent>(TokenStreams.For(sessionId));
        var subscription = await stream.SubscribeAsync((token, _) =>
        {
            lock (received) received.Add(token);
            if (token.Index == Tokens - 1) done.TrySetResult();
            return Task.CompletedTask;
        });
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>(sessionId);
        var streamed = new List<TokenEvent>();
        await foreach (var token in session.GenerateStream(With(Tokens, SessionMode.Spa, deviceId, GateTau)))
            streamed.Add(token);
        await done.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await subscription.UnsubscribeAsync();
        await session.End();

        Assert.Equal(Tokens, streamed.Count);
        lock (received) Assert.Equal(streamed, received);
        Assert.Contains(streamed, t => t.Edge);
        Assert.Contains(streamed, t => !t.Edge);
        Assert.Equal(InProcess(RandomPlugin.Of(PluginKind.Ladder), CombinationMode.Spa, Prompt, Tokens).Tokens, streamed.Select(t => t.Token));
    }

    [Fact]
    public async Task ASimulatedDevicesProfileDelaysAreReallyApplied()
    {
        var profile = new EdgeProfile("slow-link", Cores: 1, FlopsPerCore: 1e6, RoundTripMs: 25, UpMbps: 1, DownMbps: 2);
        var deviceId = await Devices.Simulated(fixture.Grains, PluginKind.Ladder, Owner, profile);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("plugin-delays");
        var started = System.Diagnostics.Stopwatch.StartNew();
        var result = await session.Generate(With(8, SessionMode.Parallel, deviceId));
        double wall = started.Elapsed.TotalMilliseconds;
        await session.End();
        var edge = result.Edge;

        // Per round trip: 25 ms + 1,536 B at 1 Mbit/s (12.3 ms) + 256 B at 2 Mbit/s (1.0 ms) on the link, and the side
        // network's FLOPs at 1 MFLOP/s on the device. The times are lower bounds: the delays are waited, not assumed.
        double network = profile.NetworkMs(edge.BytesUp / edge.Transmissions, edge.BytesDown / edge.Transmissions);
        Assert.Equal(8, edge.Transmissions);
        Assert.True(edge.NetworkMs >= 8 * network, $"network {edge.NetworkMs:F1} ms for 8 round trips of at least {network:F1} ms");
        Assert.True(edge.EdgeMs / 8 > 1, $"edge {edge.EdgeMs / 8:F2} ms per call at 1 MFLOP/s");
        Assert.True(wall >= edge.NetworkMs + edge.EdgeMs, $"the generation took {wall:F0} ms, less than its device's {edge.NetworkMs + edge.EdgeMs:F0} ms");
        output.WriteLine($"per token: cloud {result.CloudMs / 8:F2} ms, edge {edge.EdgeMs / 8:F2} ms, network {edge.NetworkMs / 8:F2} ms (link alone {network:F2} ms)");
    }

    [Fact]
    [Trait("Category", "Timing")] // the cloud time must stay under 1 s
    public async Task ACallTheDeviceDoesNotAnswerIsCountedApartAndItsWaitIsTheNetworks()
    {
        // A connected device that never answers: the first call waits out the timeout (Spa:Edge:TimeoutMs, 2 s) and takes
        // the device offline; the next calls are refused at once. The session goes on with the base (fallback "base").
        var deviceId = $"device-silent-{Guid.NewGuid():N}";
        var device = fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId);
        await device.Register(new DeviceRegistration(Owner, Devices.Secret));
        var silent = fixture.Grains.CreateObjectReference<IEdgeDeviceObserver>(new SilentDevice());
        await device.Connect(Devices.Secret, silent, new DevicePlugin(DevicePluginKind.Ladder, Reference.WithModel(m => m.Identity), null, 0.5));
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("plugin-silent");
        var result = await session.Generate(With(3, SessionMode.Parallel, deviceId));
        await session.End();

        Assert.Equal(Reference.Greedy(Prompt, 3), result.Tokens);
        Assert.True(result.Degraded);
        Assert.Equal(0, result.Edge.Transmissions);
        Assert.Equal(3, result.Edge.FailedTransmissions);
        Assert.Equal(0, result.M);
        Assert.True(result.Edge.NetworkMs >= 1990, $"the timed-out call waited {result.Edge.NetworkMs:F0} ms of network time");
        Assert.True(result.CloudMs < 1000, $"cloud time {result.CloudMs:F0} ms holds the device's wait");
    }

    /// <summary>A device that takes every call and never answers it.</summary>
    private sealed class SilentDevice : IEdgeDeviceObserver
    {
        public Task<EdgeAnswer> Answer(EdgeCall call) => new TaskCompletionSource<EdgeAnswer>().Task;
    }

    [Fact]
    public async Task ASessionMayUseOnlyADeviceOfItsOwnUser()
    {
        var deviceId = await Devices.Simulated(fixture.Grains, PluginKind.Ladder, Owner);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("plugin-other-user");
        await Assert.ThrowsAsync<DeviceAccessDeniedException>(async () =>
            await session.Generate(With(5, SessionMode.Parallel, deviceId) with { User = "mallory" }));
        await Assert.ThrowsAsync<DeviceAccessDeniedException>(async () =>
            await fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId).Register(new DeviceRegistration("mallory", Devices.Secret)));
        await Assert.ThrowsAsync<DeviceAccessDeniedException>(async () =>
            await fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId).Hello("not-the-secret-of-this-device"));
    }

    [Fact]
    public async Task TheDeviceGrainRefusesIdsThatCouldForgeALogLineAndSecretsWithoutEntropy()
    {
        var forged = fixture.Grains.GetGrain<IEdgeDeviceGrain>("phone-a\ndevice phone-b of bob registered");
        var id = await Assert.ThrowsAsync<InvalidSettingException>(async () => await forged.Register(new DeviceRegistration(Owner, Devices.Secret)));
        Assert.Equal("device_id", id.Setting);
        var weak = fixture.Grains.GetGrain<IEdgeDeviceGrain>($"device-weak-{Guid.NewGuid():N}");
        var secret = await Assert.ThrowsAsync<InvalidSettingException>(async () => await weak.Register(new DeviceRegistration(Owner, new string('a', 16))));
        Assert.Equal("secret", secret.Setting);
    }

    [Fact]
    public async Task AModeNeedsARegisteredDeviceWithTheRightPlugin()
    {
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("plugin-bad");
        await Assert.ThrowsAsync<InvalidSettingException>(async () => await session.Generate(With(5, SessionMode.Parallel, deviceId: null)));
        await Assert.ThrowsAsync<InvalidSettingException>(async () => await session.Generate(With(5, (SessionMode)99, "x")));
        await Assert.ThrowsAsync<DeviceNotFoundException>(async () => await session.Generate(With(5, SessionMode.Parallel, "never-registered")));
        var lora = await Devices.Simulated(fixture.Grains, PluginKind.Lora, Owner);
        var error = await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(With(5, SessionMode.Spa, lora)));
        Assert.Contains("ladder", error.Message);
        var fallback = With(5, SessionMode.Parallel, lora);
        await Assert.ThrowsAsync<InvalidSettingException>(async () => await session.Generate(fallback with { Plugin = fallback.Plugin with { Fallback = (FallbackPolicy)7 } }));
    }

    private static PluginKind PluginFor(SessionMode mode) => mode switch
    {
        SessionMode.Lora => PluginKind.Lora,
        SessionMode.Adapter => PluginKind.Adapter,
        _ => PluginKind.Ladder,
    };

    /// <summary>The owner's request for <paramref name="tokens"/> tokens of <see cref="Prompt"/> in <paramref name="mode"/> on <paramref name="deviceId"/>.</summary>
    private static GenerationRequest With(int tokens, SessionMode mode, string? deviceId, double? tau = null) => new(Prompt, tokens)
    {
        Plugin = new PluginChoice { Mode = mode, DeviceId = deviceId, Tau = tau },
        User = Owner,
    };

    /// <summary>The in-process engine with the same plugin: its tokens and its transport's round trips and bytes.</summary>
    public static (int[] Tokens, long RoundTrips, long BytesUp, long BytesDown) InProcess(string directory, CombinationMode mode, int[] prompt, int tokens) => Reference.WithModel(model =>
    {
        using var plugin = PersonalPlugin.Load(directory, model);
        var stepper = new PluginStepper(model, plugin, mode, new EdgeTransport(ActivationType.Fp32), TapPlacement.Edge, () => new ThresholdPolicy(GateTau));
        int[] generated = [.. new Generator(stepper).Decode(prompt, tokens, SamplingOptions.Greedy).Select(t => t.Id)];
        return (generated, stepper.Transport.RoundTrips, stepper.Transport.BytesUp, stepper.Transport.BytesDown);
    });
}

/// <summary>Simulated devices that hold the random plugins of <see cref="RandomPlugin"/>.</summary>
public static class Devices
{
    public const string Secret = "a-device-secret-for-tests";
    private static int _devices;

    /// <summary>Registers a new simulated device of <paramref name="owner"/> holding the plugin of <paramref name="kind"/>; returns its id.</summary>
    public static async Task<string> Simulated(IGrainFactory grains, PluginKind kind, string owner, EdgeProfile? profile = null)
    {
        var id = $"device-{PluginNames.Name(kind)}-{Interlocked.Increment(ref _devices)}";
        await grains.GetGrain<IEdgeDeviceGrain>(id).Register(new DeviceRegistration(owner, Secret, new SimulatedDevice(RandomPlugin.Of(kind), profile)));
        return id;
    }
}
