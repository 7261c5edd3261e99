using Spa.Grains.Abstractions;

namespace Spa.Grains.Tests;

[Collection(ClusterCollection.Name)]
public sealed class ShardedGenerationTests(DefaultBudgetCluster fixture) : IClassFixture<DefaultBudgetCluster>
{
    public static readonly string[] Prompts = ["Once upon a time", "Lily and Ben went to the park", "The little dog"];
    private const int Tokens = 60;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    public async Task GreedyThroughTheClusterMatchesTheInProcessEngine(int shards)
    {
        for (int i = 0; i < Prompts.Length; i++)
        {
            var prompt = Reference.Encode(Prompts[i]);
            var expected = Reference.Greedy(prompt, Tokens);
            var session = fixture.Grains.GetGrain<IDecodingSessionGrain>($"equal-{shards}-{i}");
            var result = await session.Generate(new GenerationRequest(prompt, Tokens) { Shards = shards });
            Assert.Equal(expected, result.Tokens);
            Assert.Equal(expected.Length == Tokens ? StopReason.Length : StopReason.Eos, result.StopReason);
            int[] history = [.. prompt, .. expected];
            Assert.Equal(history, await session.GetHistory());
            Assert.Equal(0, result.Replays);
        }
    }

    [Fact]
    public async Task TheLayersAreSplitIntoContiguousRanges()
    {
        var ranges = new List<(int, int)>();
        for (int k = 0; k < 2; k++)
        {
            var d = await fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", k, 2)).Describe();
            ranges.Add((d.FirstLayer, d.EndLayer));
            Assert.Equal(5, d.Layers);
        }
        Assert.Equal([(0, 2), (2, 5)], ranges);
    }

    [Fact]
    public async Task StreamingYieldsTheSameTokens()
    {
        var prompt = Reference.Encode(Prompts[0]);
        var expected = Reference.Greedy(prompt, Tokens);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("stream");
        var streamed = new List<int>();
        await foreach (var token in session.GenerateStream(new GenerationRequest(prompt, Tokens) { Shards = 2 }))
        {
            Assert.Equal(streamed.Count, token.Index);
            Assert.False(token.Edge);
            streamed.Add(token.Token);
        }
        Assert.Equal(expected, streamed);
    }

    [Fact]
    public async Task ContinuingInPiecesGivesTheSameTokensAsOneCall()
    {
        var prompt = Reference.Encode(Prompts[1]);
        var expected = Reference.Greedy(prompt, Tokens);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("pieces");
        var tokens = new List<int>((await session.Generate(new GenerationRequest(prompt, 7) { Shards = 5 })).Tokens);
        while (tokens.Count < Tokens)
        {
            var more = await session.Continue(Math.Min(11, Tokens - tokens.Count));
            tokens.AddRange(more.Tokens);
            if (more.StopReason != StopReason.Length) break;
        }
        Assert.Equal(expected, tokens);
    }

    [Fact]
    public async Task EndingASessionFreesItsSlots()
    {
        var prompt = Reference.Encode(Prompts[2]);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("ended");
        await session.Generate(new GenerationRequest(prompt, 5) { Shards = 2 });
        var shard = fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", 1, 2));
        int before = (await shard.GetStats()).SessionsHeld;
        await session.End();
        Assert.Equal(before - 1, (await shard.GetStats()).SessionsHeld);
        Assert.Empty(await session.GetHistory());
    }

    [Fact]
    public async Task BadRequestsFailClearly()
    {
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("bad");
        foreach (var prompt in new[] { [], [1, 9999], new int[512] })
        {
            var refused = await Assert.ThrowsAsync<InvalidSettingException>(async () => await session.Generate(new GenerationRequest(prompt, 5)));
            Assert.Equal("prompt", refused.Setting);
        }
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await session.Continue(5));
    }
}
