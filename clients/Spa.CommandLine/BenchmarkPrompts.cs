using Spa.Model;

namespace Spa.CommandLine;

/// <summary>The prompts of the throughput benchmarks and the load tester.</summary>
public static class BenchmarkPrompts
{
    /// <summary>The longest prompt <see cref="Random"/> makes; a benchmark leaves this much of the context to it.</summary>
    public const int MaxTokens = 8;

    /// <summary>
    /// BOS and up to <see cref="MaxTokens"/> - 1 random tokens each (the same for a given seed): sequences of different
    /// lengths and contents, so that a batch is not one sequence repeated.
    /// </summary>
    public static IReadOnlyList<int>[] Random(LlamaConfig config, int count, int seed)
    {
        var random = new System.Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => (IReadOnlyList<int>)[config.BosId, .. Enumerable.Range(0, random.Next(0, MaxTokens)).Select(_ => random.Next(3, config.VocabSize))])
            .ToArray();
    }
}
