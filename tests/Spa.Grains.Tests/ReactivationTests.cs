using Spa.Grains.Abstractions;

namespace Spa.Grains.Tests;

/// <summary>A lost shard cache or a re-activated session is rebuilt from the session's history.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ReactivationTests(DefaultBudgetCluster fixture) : IClassFixture<DefaultBudgetCluster>
{
    private const int Tokens = 60;

    [Fact]
    public async Task AShardThatLostItsCacheGetsItRebuiltByAReplay()
    {
        var prompt = Reference.Encode(ShardedGenerationTests.Prompts[0]);
        var expected = Reference.Greedy(prompt, Tokens);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("shard-lost");
        var first = await session.Generate(new GenerationRequest(prompt, 10) { Shards = 2 });

        var shard = fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", 1, 2));
        await fixture.Cluster.DeactivateAsync(shard);
        await fixture.Cluster.WaitForDeactivationAsync(shard);

        var rest = await session.Continue(Tokens - 10);
        Assert.Equal(expected, first.Tokens.Concat(rest.Tokens).ToArray());
        Assert.True(rest.Replays > 0);
    }

    [Fact]
    public async Task AReactivatedSessionContinuesFromItsStoredHistory()
    {
        var prompt = Reference.Encode(ShardedGenerationTests.Prompts[2]);
        var expected = Reference.Greedy(prompt, Tokens);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("session-lost");
        var first = await session.Generate(new GenerationRequest(prompt, 10) { Shards = 5 });

        await fixture.Cluster.DeactivateAsync(session);
        await fixture.Cluster.WaitForDeactivationAsync(session);

        var rest = await session.Continue(Tokens - 10);
        Assert.Equal(expected, first.Tokens.Concat(rest.Tokens).ToArray());
    }
}
