using Spa.Model.Plugins;
using Spa.Model.Sampling;
using static TorchSharp.torch;
using Xunit.Abstractions;
using Generator = Spa.Model.Generation.Generator;

namespace Spa.Grains.Tests;

/// <summary>
/// A ladder plugin with random weights (nothing is trained) saved to a temporary directory and registered on a
/// simulated edge device; generation through the cluster in modes parallel and spa must equal the in-process
/// <see cref="PluginStepper"/> token for token, and M must come from the device grain's real calls.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class PluginGenerationTests(DefaultBudgetCluster fixture, ITestOutputHelper output) : IClassFixture<DefaultBudgetCluster>, IDisposable
{
    private const int Tokens = 30;
    private const double SpaTau = 0.5;
    private static readonly string[] Prompts = ["Once upon a time", "Lily and Ben went to the park"];

    private readonly string _directory = Path.Combine(Path.GetTempPath(), $"spa-plugin-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    /// <summary>Saves a ladder plugin (with a gate) whose every parameter is randn * 0.2, so that its out is far from zero.</summary>
    private void SaveRandomPlugin() => Reference.WithModel(model =>
    {
        using var plugin = PersonalPlugin.Create(model, PluginKind.Ladder, CombinationMode.Spa, PluginDimensions.For(model.Config), seed: 3);
        using (no_grad())
            foreach (var (_, p) in plugin.NamedParameters()) p.copy_(randn(p.shape) * 0.2);
        plugin.Save(_directory);
        return true;
    });

    /// <summary>The in-process engine with the same plugin: its tokens and its transport's round trips and bytes.</summary>
    private (int[] Tokens, long RoundTrips, long BytesUp, long BytesDown) InProcess(int[] prompt, CombinationMode mode) => Reference.WithModel(model =>
    {
        using var plugin = PersonalPlugin.Load(_directory, model);
        var stepper = new PluginStepper(model, plugin, mode, new EdgeTransport(ActivationType.Fp32), TapPlacement.Edge, () => new ThresholdPolicy(SpaTau));
        int[] tokens = [.. new Generator(stepper).Decode(prompt, Tokens, SamplingOptions.Greedy).Select(t => t.Id)];
        return (tokens, stepper.Transport.RoundTrips, stepper.Transport.BytesUp, stepper.Transport.BytesDown);
    });

    [Theory]
    [InlineData("parallel", 1)]
    [InlineData("parallel", 2)]
    [InlineData("spa", 1)]
    [InlineData("spa", 2)]
    public async Task GreedyWithAPluginThroughTheClusterMatchesTheInProcessStepper(string mode, int shards)
    {
        SaveRandomPlugin();
        var deviceId = $"device-{mode}-{shards}";
        var device = fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId);
        await device.Register("alice", _directory);
        var combination = mode == "spa" ? CombinationMode.Spa : CombinationMode.Parallel;
        long tokens = 0, transmissions = 0;
        for (int i = 0; i < Prompts.Length; i++)
        {
            var prompt = Reference.Encode(Prompts[i]);
            var expected = InProcess(prompt, combination);
            if (mode == "parallel") Assert.NotEqual(Reference.Greedy(prompt, Tokens), expected.Tokens); // the plugin matters

            var before = await device.GetStats();
            var session = fixture.Grains.GetGrain<IDecodingSessionGrain>($"plugin-{mode}-{shards}-{i}");
            var result = await session.Generate(new GenerationRequest(prompt, Tokens, shards, Mode: mode, DeviceId: deviceId, Tau: mode == "spa" ? SpaTau : null));
            var after = await device.GetStats();

            Assert.Equal(expected.Tokens, result.Tokens);
            Assert.Equal(mode, result.Mode);
            Assert.Equal(result.Tokens.Length, result.GeneratedTokens);
            Assert.Equal(expected.RoundTrips, result.Transmissions);
            Assert.Equal(after.RoundTrips - before.RoundTrips, result.Transmissions);
            Assert.Equal(expected.BytesUp, result.BytesUp);
            Assert.Equal(expected.BytesDown, result.BytesDown);
            Assert.Equal(after.BytesUp - before.BytesUp, result.BytesUp);
            Assert.Equal(after.BytesDown - before.BytesDown, result.BytesDown);
            if (mode == "parallel") Assert.Equal(1.0, result.M);
            tokens += result.GeneratedTokens;
            transmissions += result.Transmissions;
            await session.End();
        }
        output.WriteLine($"{mode}, {shards} shard(s): {transmissions} transmissions over {tokens} tokens, M = {(double)transmissions / tokens:F3}");
        if (mode == "spa") Assert.InRange(transmissions, 1, tokens - 1); // the gate sends some tokens and keeps others
    }

    [Fact]
    public async Task APluginModeNeedsARegisteredDevice()
    {
        var prompt = Reference.Encode(Prompts[0]);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("plugin-bad");
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(prompt, 5, Mode: "parallel")));
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(prompt, 5, Mode: "lora-ish", DeviceId: "x")));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await session.Generate(new GenerationRequest(prompt, 5, Mode: "parallel", DeviceId: "never-registered")));
    }
}
