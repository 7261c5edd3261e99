using Spa.Grains.Abstractions;
using Spa.Model.Sampling;

namespace Spa.Grains.Sessions;

/// <summary>A request's sampling settings as the engine's <see cref="SamplingOptions"/>, and a stored generation's sampler.</summary>
public static class Sampling
{
    public static SamplingOptions ToOptions(this SamplingSettings settings) => new()
    {
        Temperature = settings.Temperature,
        TopP = settings.TopP,
        TopK = settings.TopK,
        Seed = settings.Seed is { } seed ? unchecked((ulong)seed) : SamplingOptions.Greedy.Seed,
        RepetitionPenalty = settings.RepetitionPenalty,
        PresencePenalty = settings.PresencePenalty,
        FrequencyPenalty = settings.FrequencyPenalty,
        LogitBias = settings.LogitBias ?? [],
    };

    /// <summary>
    /// The sampler of a stored generation, at the point of its random sequence where it was: a stochastic
    /// <see cref="Sampler.Next"/> draws exactly one number per token, so the draws of the <paramref name="generated"/>
    /// tokens so far are replayed on a one-token row (which draws and changes nothing else).
    /// </summary>
    public static Sampler Restore(SamplingSettings settings, int generated)
    {
        var sampler = new Sampler(settings.ToOptions());
        if (settings.Temperature > 0)
        {
            ReadOnlySpan<float> one = [0f];
            for (int i = 0; i < generated; i++) sampler.Next(one, [], 0);
        }
        return sampler;
    }
}
