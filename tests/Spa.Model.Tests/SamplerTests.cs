using Spa.Model.Sampling;

namespace Spa.Model.Tests;

/// <summary>The sampler's penalties and bias on hand-made logits, where the right pick is known.</summary>
public sealed class SamplerTests
{
    // Token 0 leads token 1 by 1.0, token 2 trails far behind.
    private static readonly float[] Logits = [3.0f, 2.0f, -5.0f];

    [Fact]
    public void PresenceAndFrequencyPenaltiesCountOnlyGeneratedTokens()
    {
        // Token 0 appears in the prompt (index 0) and once in the generation: a presence penalty of 0.6 plus a frequency
        // penalty of 0.5 per appearance take 1.1 off its logit, which puts token 1 first. Counting the prompt's
        // appearance too would take 1.6.
        var penalised = new Sampler(SamplingOptions.Greedy with { PresencePenalty = 0.6, FrequencyPenalty = 0.5 });
        Assert.Equal(1, penalised.Next(Logits, [0, 1, 0], promptLength: 2));
        var justUnder = new Sampler(SamplingOptions.Greedy with { PresencePenalty = 0.4, FrequencyPenalty = 0.5 });
        Assert.Equal(0, justUnder.Next(Logits, [0, 1, 0], promptLength: 2));
        Assert.Equal(0, penalised.Next(Logits, [0, 0, 0], promptLength: 3)); // nothing generated yet: no penalty
        var frequent = new Sampler(SamplingOptions.Greedy with { FrequencyPenalty = 0.4 });
        Assert.Equal(0, frequent.Next(Logits, [5, 0, 0], promptLength: 1)); // 0.8 off
        Assert.Equal(1, frequent.Next(Logits, [5, 0, 0, 0], promptLength: 1)); // 1.2 off
    }

    [Fact]
    public void LogitBiasMovesTheChoice()
    {
        Assert.Equal(2, new Sampler(SamplingOptions.Greedy with { LogitBias = new Dictionary<int, double> { [2] = 9 } }).Next(Logits, [1], 1));
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy with { LogitBias = new Dictionary<int, double> { [0] = -100 } }).Next(Logits, [1], 1));
        var sampled = new Sampler(new SamplingOptions { Temperature = 1, Seed = 3, LogitBias = new Dictionary<int, double> { [0] = -100, [1] = -100 } });
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(2, sampled.Next(Logits, [1], 1)));
    }

    [Fact]
    public void TopLogprobsAreTheModelsMostLikelyFirst()
    {
        var (chosen, top) = Sampler.TopLogprobs(Logits, 2, 2);
        var expected = Sampler.LogSoftmax(Logits);
        Assert.Equal(expected[2], chosen);
        Assert.Equal([(0, expected[0]), (1, expected[1])], top);
        Assert.Equal(1.0, expected.Sum(l => Math.Exp(l)), 5);
    }

    [Theory]
    [InlineData(3, 0)]
    [InlineData(0, -2.5)]
    public void PenaltiesOutsideOpenAisRangeAreRefused(double presence, double frequency) =>
        Assert.Throws<ArgumentException>(() => (SamplingOptions.Greedy with { PresencePenalty = presence, FrequencyPenalty = frequency }).Validate());

    [Fact]
    public void ABiasOutsideItsRangeIsRefused() =>
        Assert.Contains("[-100, 100]", Assert.Throws<ArgumentException>(() => (SamplingOptions.Greedy with { LogitBias = new Dictionary<int, double> { [4] = 101 } }).Validate()).Message);
}
