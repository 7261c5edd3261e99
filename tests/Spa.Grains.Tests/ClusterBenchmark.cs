using System.Diagnostics;
using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Sampling;
using Spa.Model.Tests;
using Xunit.Abstractions;

namespace Spa.Grains.Tests;

/// <summary>A fact that runs only when SPA_BENCH=1: a measurement, not a check (it asserts nothing about speed).</summary>
public sealed class BenchmarkFactAttribute : FactAttribute
{
    public BenchmarkFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("SPA_BENCH") != "1") Skip = "a measurement: set SPA_BENCH=1 to run it";
    }
}

/// <summary>
/// Per-token latency of one session and aggregate tokens/s of 1 and 32 concurrent sessions through the one-shard
/// in-process cluster, next to the in-process engine in the same process. Run:
/// <c>SPA_BENCH=1 dotnet test tests/Spa.Grains.Tests --filter FullyQualifiedName~ClusterBenchmark --logger "console;verbosity=detailed"</c>
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterBenchmark(DefaultBudgetCluster fixture, ITestOutputHelper output) : IClassFixture<DefaultBudgetCluster>
{
    private const int Tokens = 200;
    private const int Concurrent = 32;

    [BenchmarkFact]
    public async Task Measure()
    {
        var prompt = Reference.Encode("Once upon a time");
        using var model = LlamaModel.Load(SharedData.Stories260K, new ModelOptions());
        var generator = new Generator(model);
        int run = 0;

        // Warm both paths up (JIT, first activations, torch allocations).
        generator.Decode(prompt, 20, SamplingOptions.Greedy).Count();
        await Cluster(1, 20);
        await Cluster(Concurrent, 20);

        for (int repeat = 0; repeat < 3; repeat++)
        {
            var watch = Stopwatch.StartNew();
            int engineOne = generator.Decode(prompt, Tokens, SamplingOptions.Greedy).Count();
            double engineOneSeconds = watch.Elapsed.TotalSeconds;

            watch.Restart();
            int engineBatch = generator.DecodeBatchGreedy(Enumerable.Repeat((IReadOnlyList<int>)prompt, Concurrent).ToArray(), Tokens).Sum(t => t.Count);
            double engineBatchSeconds = watch.Elapsed.TotalSeconds;

            var (clusterOne, clusterOneSeconds) = await Cluster(1, Tokens);
            var (clusterMany, clusterManySeconds) = await Cluster(Concurrent, Tokens);

            output.WriteLine($"run {repeat}: {Tokens} tokens per session (stories260K, 1 shard, {Environment.ProcessorCount} cores)");
            output.WriteLine($"  engine,  1 sequence : {1000 * engineOneSeconds / engineOne,6:F3} ms/token  {engineOne / engineOneSeconds,8:F0} tokens/s");
            output.WriteLine($"  cluster, 1 session  : {1000 * clusterOneSeconds / clusterOne,6:F3} ms/token  {clusterOne / clusterOneSeconds,8:F0} tokens/s  ({clusterOneSeconds / clusterOne / (engineOneSeconds / engineOne):F2}x the engine's latency)");
            output.WriteLine($"  engine,  batch of {Concurrent}        : {engineBatch / engineBatchSeconds,8:F0} tokens/s");
            output.WriteLine($"  cluster, {Concurrent} sessions concurrent : {clusterMany / clusterManySeconds,8:F0} tokens/s  ({clusterMany / clusterManySeconds / (clusterOne / clusterOneSeconds):F2}x one session)");
        }
        var stats = await fixture.Grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", 0, 1)).GetStats();
        output.WriteLine($"shard 0 of 1: {stats.Steps} steps in {stats.Forwards} forwards, largest batch {stats.LargestBatch}, mean {stats.MeanBatch:F2}");

        async Task<(int Tokens, double Seconds)> Cluster(int sessions, int tokens)
        {
            int id = run++;
            var grains = Enumerable.Range(0, sessions).Select(i => fixture.Grains.GetGrain<IDecodingSessionGrain>($"bench-{id}-{i}")).ToArray();
            var watch = Stopwatch.StartNew();
            var results = await Task.WhenAll(grains.Select(g => g.Generate(new GenerationRequest(prompt, tokens, 1)).AsTask()));
            double seconds = watch.Elapsed.TotalSeconds;
            await Task.WhenAll(grains.Select(g => g.End().AsTask()));
            return (results.Sum(r => r.Tokens.Length), seconds);
        }
    }
}
