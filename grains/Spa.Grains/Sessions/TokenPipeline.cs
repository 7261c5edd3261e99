using System.Diagnostics;
using Spa.Grains.Abstractions;
using Spa.Model.Sampling;

namespace Spa.Grains.Sessions;

/// <summary>
/// How one generation makes its tokens, apart from where it keeps them: the positions of the history the shards have
/// not seen go through the <see cref="ShardChain"/> (which replays the whole history when a shard lost it), a ladder
/// mode's <see cref="PluginCombiner"/> adds the device's answer, and the <see cref="Sampler"/> picks the token with one
/// draw, exactly as the in-process <see cref="Spa.Model.Generation.Generator"/> does. In two steps, so that the caller
/// can stop in between without having drawn: <see cref="ComputeAsync"/>, then <see cref="Pick"/>.
/// </summary>
/// <param name="combiner">The ladder modes' combiner; null in the base and split modes.</param>
/// <param name="split">The split modes' device, which the shards call inside their layers.</param>
public sealed class TokenPipeline(ShardChain chain, PluginCombiner? combiner, Sampler sampler, SplitEdge? split)
{
    private int _fed; // how far the shards have seen the history; 0 in a new pipeline, so that its first step replays

    /// <summary>Steps this pipeline had to replay because a shard had lost the session's cache.</summary>
    public int Replays => chain.Replays;

    /// <summary>
    /// The next token's logits for <paramref name="history"/>, whether the device took part in it, and the device calls
    /// it made; a device that was unavailable leaves the usage degraded and the logits the base's.
    /// </summary>
    public async Task<TokenLogits> ComputeAsync(IReadOnlyList<int> history, Activity? trace)
    {
        int[] sequence = [.. history];
        var step = await chain.StepAsync(sequence, _fed, wantTaps: combiner is not null, split, SpaTracing.Records(trace));
        var usage = step.Edge;
        var (logits, asked) = combiner is not null && !usage.Degraded
            ? await combiner.CombineAsync(step, usage, trace)
            : (step.Logits!, split is not null && !usage.Degraded);
        return new TokenLogits(logits, asked, usage, sequence.Length);
    }

    /// <summary>Draws the token; the shards have now seen the history the logits were computed for.</summary>
    public int Pick(TokenLogits computed, IReadOnlyList<int> history, int promptLength)
    {
        int token = sampler.Next(computed.Logits, history, promptLength);
        _fed = computed.SequenceLength;
        return token;
    }

    /// <summary>Drops the gate the combiner took over from the device.</summary>
    public Task DisposeAsync() => combiner?.DisposeAsync() ?? Task.CompletedTask;
}

/// <summary>One step's logits, whether the device took part, its device calls, and the length of the history it read.</summary>
public sealed record TokenLogits(float[] Logits, bool Asked, EdgeCounter Usage, int SequenceLength);
