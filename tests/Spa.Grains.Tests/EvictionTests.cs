using Spa.Grains.Abstractions;
using Spa.Model.Plugins;
using Spa.Testing;

namespace Spa.Grains.Tests;

[Collection(ClusterCollection.Name)]
public sealed class EvictionTests(SmallBudgetCluster fixture) : IClassFixture<SmallBudgetCluster>
{
    private const int Tokens = 60;

    [Fact]
    public async Task InterleavedSessionsUnderASmallBudgetReplayAndGiveTheSameTokens()
    {
        var prompts = ShardedGenerationTests.Prompts.Select(Reference.Encode).ToArray();
        var expected = prompts.Select(p => Reference.Greedy(p, Tokens)).ToArray();
        var sessions = Enumerable.Range(0, prompts.Length).Select(i => fixture.Grains.GetGrain<IDecodingSessionGrain>($"evict-{i}")).ToArray();
        var outputs = prompts.Select(_ => new List<int>()).ToArray();
        var done = new bool[prompts.Length];
        int replays = 0;

        for (int i = 0; i < sessions.Length; i++)
        {
            var r = await sessions[i].Generate(new GenerationRequest(prompts[i], 5) { Shards = 2 });
            outputs[i].AddRange(r.Tokens);
            done[i] = r.StopReason != StopReason.Length;
        }
        // Sessions 0 and 1 every round, session 2 every other round: the first shard (two slots) then sometimes still
        // holds a session whose slot on the second shard (one slot) is gone, so both shards ask for replays.
        for (int round = 0; !done.All(d => d); round++)
        {
            for (int i = 0; i < sessions.Length; i++)
            {
                if (done[i] || (i == 2 && round % 2 == 1 && !done[0] && !done[1])) continue;
                var r = await sessions[i].Continue(Math.Min(5, Tokens - outputs[i].Count));
                outputs[i].AddRange(r.Tokens);
                replays += r.Replays;
                done[i] = r.StopReason != StopReason.Length || outputs[i].Count >= Tokens;
            }
        }

        for (int i = 0; i < sessions.Length; i++) Assert.Equal(expected[i], outputs[i]);
        Assert.True(replays > 0, "the sessions should have replayed their history");
        var first = await fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", 0, 2)).GetStats();
        var last = await fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", 1, 2)).GetStats();
        Assert.Equal((2, 1), (first.Slots, last.Slots));
        Assert.True(first.Evictions > 0 && last.Evictions > 0, $"evictions: shard 0 {first.Evictions}, shard 1 {last.Evictions}");
        Assert.True(first.ReplayRequests > 0 && last.ReplayRequests > 0, $"replay requests: shard 0 {first.ReplayRequests}, shard 1 {last.ReplayRequests}");
    }

    [Fact]
    public async Task ConcurrentSessionsUnderASmallBudgetGiveTheSameTokens()
    {
        var prompts = ShardedGenerationTests.Prompts.Select(Reference.Encode).ToArray();
        var expected = prompts.Select(p => Reference.Greedy(p, Tokens)).ToArray();
        var results = await Task.WhenAll(prompts.Select((p, i) =>
            fixture.Grains.GetGrain<IDecodingSessionGrain>($"concurrent-{i}").Generate(new GenerationRequest(p, Tokens) { Shards = 5 }).AsTask()));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(expected[i], results[i].Tokens);
    }

    [Fact]
    public async Task DeviceCallsOfAStepThatIsReplayedAreCounted()
    {
        // LoRA calls the device in every layer. With two shards under this budget, a session that lost its slot on the
        // second shard (one slot) still holds it on the first (two slots): its step runs the first shard, calls the
        // device there, and only then learns it must replay. Those calls happened and must be counted.
        var deviceId = await Devices.Simulated(fixture.Grains, PluginKind.Lora, "alice");
        var device = fixture.Grains.GetGrain<IEdgeDeviceGrain>(deviceId);
        var prompts = ShardedGenerationTests.Prompts.Take(2).Select(Reference.Encode).ToArray();
        var sessions = prompts.Select((_, i) => fixture.Grains.GetGrain<IDecodingSessionGrain>($"evict-lora-{i}")).ToArray();
        var outputs = prompts.Select(_ => new List<int>()).ToArray();
        var last = new GenerationResult[prompts.Length];
        var before = await device.GetStats();
        for (int round = 0; round < 4; round++)
        {
            for (int i = 0; i < sessions.Length; i++)
            {
                last[i] = round == 0
                    ? await sessions[i].Generate(new GenerationRequest(prompts[i], 3) { Shards = 2, Plugin = new() { Mode = SessionMode.Lora, DeviceId = deviceId }, User = "alice" })
                    : await sessions[i].Continue(3);
                outputs[i].AddRange(last[i].Tokens);
            }
        }
        var after = await device.GetStats();
        foreach (var session in sessions) await session.End();

        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(PluginGenerationTests.InProcess(RandomPlugin.Of(PluginKind.Lora), CombinationMode.Parallel, prompts[i], outputs[i].Count).Tokens, outputs[i]);
        Assert.True(last.Sum(r => r.Replays) > 0, "the sessions should have replayed their history");
        Assert.Equal(after.RoundTrips - before.RoundTrips, last.Sum(r => r.Edge.Transmissions));
        Assert.Equal(after.BytesUp - before.BytesUp, last.Sum(r => r.Edge.BytesUp));
        int layers = Reference.WithModel(m => m.Config.Layers);
        Assert.True(last.Sum(r => r.Edge.Transmissions) > layers * last.Sum(r => r.GeneratedTokens), "replayed steps call the device again");
    }
}
