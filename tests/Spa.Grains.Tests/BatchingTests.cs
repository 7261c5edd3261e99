using Spa.Grains.Abstractions;
using Xunit.Abstractions;

namespace Spa.Grains.Tests;

/// <summary>Concurrent sessions on the same shards are batched into one forward and still decode as if alone.</summary>
[Collection(ClusterCollection.Name)]
public sealed class BatchingTests(DefaultBudgetCluster fixture, ITestOutputHelper output) : IClassFixture<DefaultBudgetCluster>
{
    private const int Sessions = 16;
    private const int Tokens = 40;

    private static readonly string[] Subjects = ["Lily", "Ben", "Tom", "Sue", "a cat", "a bird", "the sun", "a boy"];

    [Fact]
    public async Task ConcurrentSessionsAreBatchedAndMatchTheInProcessEngine()
    {
        var prompts = Enumerable.Range(0, Sessions)
            .Select(i => Reference.Encode(i % 2 == 0 ? $"Once upon a time, {Subjects[i / 2]}" : $"One day {Subjects[i / 2]} saw"))
            .ToArray();
        var expected = prompts.Select(p => Reference.Greedy(p, Tokens)).ToArray();

        var results = await Task.WhenAll(prompts.Select((p, i) =>
            fixture.Grains.GetGrain<IDecodingSessionGrain>($"batched-{i}").Generate(new GenerationRequest(p, Tokens) { Shards = 2 }).AsTask()));

        for (int i = 0; i < Sessions; i++) Assert.Equal(expected[i], results[i].Tokens);
        Assert.All(results, r => Assert.Equal(0, r.Replays));
        for (int k = 0; k < 2; k++)
        {
            var stats = await fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", k, 2)).GetStats();
            output.WriteLine($"shard {k}: {stats.Steps} steps in {stats.Forwards} forwards, largest batch {stats.LargestBatch}, mean {stats.MeanBatch:F2}");
            Assert.True(stats.LargestBatch >= 2, $"shard {k}: largest batch {stats.LargestBatch} over {stats.Forwards} forwards");
            Assert.True(stats.MeanBatch > 1, $"shard {k}: mean batch {stats.MeanBatch}");
            Assert.True(stats.Forwards < stats.Steps, $"shard {k}: {stats.Forwards} forwards for {stats.Steps} steps");
        }
    }
}
