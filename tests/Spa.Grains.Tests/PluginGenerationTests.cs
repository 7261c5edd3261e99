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

    public static TheoryData<string, int> ModesAndShards()
    {
        var data = new TheoryData<string, int>();
        foreach (var mode in SessionModes.All.Where(m => m != SessionModes.Base))
            foreach (var shards in new[] { 1, 2, 5 })
                data.Add(mode, shards);
        return data;
    }

    [Theory]
    [MemberData(nameof(ModesAndShards))]
    public async Task GreedyWithAPluginThroughTheClusterMatchesTheInProcessStepper(string mode, int shards)
    {
        var kind = PluginFor(mode);
        var deviceId = await Devices.Simulated(fixture.Grains, kind, Owner);
        var device = fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId);
        var combination = SessionModes.Split(mode) ? CombinationMode.Parallel : PluginNames.ParseMode(mode);
        var expected = InProcess(RandomPlugin.Of(kind), combination, Prompt, Tokens);
        if (mode is SessionModes.Parallel or SessionModes.Lora or SessionModes.Adapter)
            Assert.NotEqual(Reference.Greedy(Prompt, Tokens), expected.Tokens); // the plugin matters

        var before = await device.GetStats();
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>($"plugin-{mode}-{shards}");
        var result = await session.Generate(new GenerationRequest(Prompt, Tokens, shards, Mode: mode, DeviceId: deviceId,
            Tau: SessionModes.Gated(mode) ? GateTau : null, User: Owner));
        var after = await device.GetStats();
        await session.End();

        Assert.Equal(expected.Tokens, result.Tokens);
        Assert.Equal(mode, result.Mode);
        Assert.Equal(result.Tokens.Length, result.GeneratedTokens);
        Assert.False(result.Degraded);
        Assert.Equal(expected.RoundTrips, result.Transmissions);
        Assert.Equal(after.RoundTrips - before.RoundTrips, result.Transmissions);
        Assert.Equal(expected.BytesUp, result.BytesUp);
        Assert.Equal(expected.BytesDown, result.BytesDown);
        Assert.Equal(after.BytesUp - before.BytesUp, result.BytesUp);
        Assert.Equal(after.BytesDown - before.BytesDown, result.BytesDown);
        int layers = Reference.WithModel(m => m.Config.Layers);
        double expectedM = mode switch
        {
            SessionModes.Lora => layers,
            SessionModes.Adapter => 2 * layers,
            SessionModes.Side or SessionModes.Parallel => 1,
            _ => (double)expected.RoundTrips / Tokens,
        };
        Assert.Equal(expectedM, result.M, 9);
        if (SessionModes.Gated(mode)) Assert.InRange(result.Transmissions, 1, Tokens - 1); // the gate sends some tokens and keeps others
        Assert.Equal(SessionModes.Gated(mode) ? result.Transmissions : Tokens, result.EdgeTokens);
        output.WriteLine($"{mode}, {shards} shard(s): M = {result.M:F3}, {result.BytesUp / (double)Tokens:F0} B up and {result.BytesDown / (double)Tokens:F0} B down per token");
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
        await foreach (var token in session.GenerateStream(new GenerationRequest(Prompt, Tokens, Mode: SessionModes.Spa, DeviceId: deviceId, Tau: GateTau, User: Owner)))
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
        var result = await session.Generate(new GenerationRequest(Prompt, 8, Mode: SessionModes.Parallel, DeviceId: deviceId, User: Owner));
        double wall = started.Elapsed.TotalMilliseconds;
        await session.End();

        // Per round trip: 25 ms + 1,536 B at 1 Mbit/s (12.3 ms) + 256 B at 2 Mbit/s (1.0 ms) on the link, and the side
        // network's FLOPs at 1 MFLOP/s on the device. The times are lower bounds: the delays are waited, not assumed.
        double network = profile.NetworkMs(result.BytesUp / result.Transmissions, result.BytesDown / result.Transmissions);
        Assert.Equal(8, result.Transmissions);
        Assert.True(result.NetworkMs >= 8 * network, $"network {result.NetworkMs:F1} ms for 8 round trips of at least {network:F1} ms");
        Assert.True(result.EdgeMs / 8 > 1, $"edge {result.EdgeMs / 8:F2} ms per call at 1 MFLOP/s");
        Assert.True(wall >= result.NetworkMs + result.EdgeMs, $"the generation took {wall:F0} ms, less than its device's {result.NetworkMs + result.EdgeMs:F0} ms");
        output.WriteLine($"per token: cloud {result.CloudMs / 8:F2} ms, edge {result.EdgeMs / 8:F2} ms, network {result.NetworkMs / 8:F2} ms (link alone {network:F2} ms)");
    }

    [Fact]
    public async Task ACallTheDeviceDoesNotAnswerIsCountedApartAndItsWaitIsTheNetworks()
    {
        // A connected device that never answers: the first call waits out the timeout (Spa:Edge:TimeoutMs, 2 s) and takes
        // the device offline; the next calls are refused at once. The session goes on with the base (fallback "base").
        var deviceId = $"device-silent-{Guid.NewGuid():N}";
        var device = fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId);
        await device.Register(new DeviceRegistration(Owner, Devices.Secret));
        var silent = fixture.Grains.CreateObjectReference<IEdgeDeviceObserver>(new SilentDevice());
        await device.Connect(Devices.Secret, silent, new DevicePlugin("ladder", Reference.WithModel(m => m.Identity), null, 0.5));
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("plugin-silent");
        var result = await session.Generate(new GenerationRequest(Prompt, 3, Mode: SessionModes.Parallel, DeviceId: deviceId, User: Owner));
        await session.End();

        Assert.Equal(Reference.Greedy(Prompt, 3), result.Tokens);
        Assert.True(result.Degraded);
        Assert.Equal(0, result.Transmissions);
        Assert.Equal(3, result.FailedTransmissions);
        Assert.Equal(0, result.M);
        Assert.True(result.NetworkMs >= 1990, $"the timed-out call waited {result.NetworkMs:F0} ms of network time");
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
            await session.Generate(new GenerationRequest(Prompt, 5, Mode: SessionModes.Parallel, DeviceId: deviceId, User: "mallory")));
        await Assert.ThrowsAsync<DeviceAccessDeniedException>(async () =>
            await fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId).Register(new DeviceRegistration("mallory", Devices.Secret)));
        await Assert.ThrowsAsync<DeviceAccessDeniedException>(async () =>
            await fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId).Hello("not-the-secret-of-this-device"));
    }

    [Fact]
    public async Task AModeNeedsARegisteredDeviceWithTheRightPlugin()
    {
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("plugin-bad");
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(Prompt, 5, Mode: "parallel", User: Owner)));
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(Prompt, 5, Mode: "lora-ish", DeviceId: "x", User: Owner)));
        await Assert.ThrowsAsync<DeviceNotFoundException>(async () => await session.Generate(new GenerationRequest(Prompt, 5, Mode: "parallel", DeviceId: "never-registered", User: Owner)));
        var lora = await Devices.Simulated(fixture.Grains, PluginKind.Lora, Owner);
        var error = await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(Prompt, 5, Mode: "spa", DeviceId: lora, User: Owner)));
        Assert.Contains("ladder", error.Message);
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(Prompt, 5, Mode: "parallel", DeviceId: lora, User: Owner, Fallback: "maybe")));
    }

    private static PluginKind PluginFor(string mode) => mode switch
    {
        SessionModes.Lora => PluginKind.Lora,
        SessionModes.Adapter => PluginKind.Adapter,
        _ => PluginKind.Ladder,
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
