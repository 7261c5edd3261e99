using Spa.Grains.Abstractions;
using Spa.Model.Sampling;

namespace Spa.Grains.Tests;

/// <summary>Stochastic sampling through the cluster draws the same tokens as the in-process engine for the same seed.</summary>
[Collection(ClusterCollection.Name)]
public sealed class SamplingTests(DefaultBudgetCluster fixture) : IClassFixture<DefaultBudgetCluster>
{
    private const int Tokens = 60;
    private static readonly SamplingOptions Options = new() { Temperature = 1.0, TopP = 0.9, Seed = 7 };

    private static GenerationRequest Request(int[] prompt, int maxTokens, int shards, long seed) =>
        new(prompt, maxTokens) { Shards = shards, Sampling = new() { Temperature = 1.0, TopP = 0.9, Seed = seed } };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task TheSameSeedGivesTheInProcessEnginesTokensAndAnotherSeedOthers(int shards)
    {
        var prompt = Reference.Encode(ShardedGenerationTests.Prompts[0]);
        var expected = Reference.Decode(prompt, Tokens, Options);
        Assert.NotEqual(Reference.Greedy(prompt, Tokens), expected); // temperature 1 really samples

        var seven = await fixture.Grains.GetGrain<IDecodingSessionGrain>($"sample-7-{shards}").Generate(Request(prompt, Tokens, shards, 7));
        var again = await fixture.Grains.GetGrain<IDecodingSessionGrain>($"sample-7-again-{shards}").Generate(Request(prompt, Tokens, shards, 7));
        var eight = await fixture.Grains.GetGrain<IDecodingSessionGrain>($"sample-8-{shards}").Generate(Request(prompt, Tokens, shards, 8));

        Assert.Equal(expected, seven.Tokens);
        Assert.Equal(expected, again.Tokens);
        Assert.NotEqual(expected, eight.Tokens);
        Assert.Equal(Reference.Decode(prompt, Tokens, Options with { Seed = 8 }), eight.Tokens);
    }

    [Fact]
    public async Task TopKAndRepetitionPenaltyMatchTheInProcessEngine()
    {
        var prompt = Reference.Encode(ShardedGenerationTests.Prompts[1]);
        var options = new SamplingOptions { Temperature = 0.8, TopK = 20, RepetitionPenalty = 1.3, Seed = 11 };
        var result = await fixture.Grains.GetGrain<IDecodingSessionGrain>("sample-topk").Generate(
            new GenerationRequest(prompt, Tokens) { Shards = 5, Sampling = new() { Temperature = 0.8, TopK = 20, Seed = 11, RepetitionPenalty = 1.3 } });
        Assert.Equal(Reference.Decode(prompt, Tokens, options), result.Tokens);
    }

    [Fact]
    public async Task AReactivatedSessionContinuesItsRandomSequence()
    {
        var prompt = Reference.Encode(ShardedGenerationTests.Prompts[2]);
        var expected = Reference.Decode(prompt, Tokens, Options);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("sample-reactivated");
        var first = await session.Generate(Request(prompt, 10, 2, 7));

        await fixture.Cluster.DeactivateAsync(session);
        await fixture.Cluster.WaitForDeactivationAsync(session);

        var rest = await session.Continue(Tokens - 10);
        Assert.Equal(expected, first.Tokens.Concat(rest.Tokens).ToArray());
    }

    [Fact]
    public async Task BadSamplingSettingsFailClearly()
    {
        var prompt = Reference.Encode(ShardedGenerationTests.Prompts[0]);
        var session = fixture.Grains.GetGrain<IDecodingSessionGrain>("sample-bad");
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(prompt, 5) { Sampling = new() { Temperature = -1 } }));
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(prompt, 5) { Sampling = new() { TopP = 0 } }));
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.Generate(new GenerationRequest(prompt, 5) { Sampling = new() { TopK = -1 } }));
    }
}
