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
            var r = await sessions[i].Generate(new GenerationRequest(prompts[i], 5, 2));
            outputs[i].AddRange(r.Tokens);
            done[i] = r.StopReason != "length";
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
                done[i] = r.StopReason != "length" || outputs[i].Count >= Tokens;
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
            fixture.Grains.GetGrain<IDecodingSessionGrain>($"concurrent-{i}").Generate(new GenerationRequest(p, Tokens, 5)).AsTask()));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(expected[i], results[i].Tokens);
    }
}
