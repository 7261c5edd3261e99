using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;
using Spa.Model.Sampling;

namespace Spa.Grains.Tests;

/// <summary>
/// The session's way to its next token, without a cluster: shards that remember how far they have seen each session,
/// as the real ones do, and a last shard whose logits point at "the last token + 1".
/// </summary>
public sealed class TokenPipelineTests
{
    private const string Session = "pipeline";
    private const int Vocab = 32;

    [Fact]
    public async Task EachStepSendsOnlyThePositionsTheShardsHaveNotSeen()
    {
        var shards = Shards(3);
        var pipeline = Pipeline(shards);
        List<int> history = [1, 2, 3];

        history.Add(await Next(pipeline, history));
        history.Add(await Next(pipeline, history));

        Assert.Equal([1, 2, 3, 4, 5], history);
        Assert.Equal([(0, 3), (3, 4)], shards[0].Steps.Select(s => (s.StartPosition, s.TotalLength)));
        Assert.Equal([[1, 2, 3], [4]], shards[0].Steps.Select(s => s.Tokens!));
        Assert.All(shards, shard => Assert.Equal(2, shard.Steps.Count));
        Assert.Equal(0, pipeline.Replays);
    }

    [Fact]
    public async Task AShardThatLostTheSessionMakesTheWholeHistoryGoAgainAndItsDeviceCallsStillCount()
    {
        var shards = Shards(3);
        var pipeline = Pipeline(shards);
        List<int> history = [7, 8];
        history.Add(await Next(pipeline, history));

        shards[1].Seen = 0; // its slot was evicted, or it was re-activated elsewhere
        shards[0].Usage = new EdgeUsage(1, 100, 10, 0.5, 2.0, false);
        var computed = await pipeline.ComputeAsync(history, null);
        history.Add(pipeline.Pick(computed, history, promptLength: 1));

        Assert.Equal([7, 8, 9, 10], history);
        Assert.Equal(1, pipeline.Replays);
        Assert.Equal([(0, 2), (2, 3), (0, 3)], shards[0].Steps.Select(s => (s.StartPosition, s.TotalLength)));
        Assert.Equal([(0, 2), (2, 3), (0, 3)], shards[1].Steps.Select(s => (s.StartPosition, s.TotalLength)));
        Assert.Equal([(0, 2), (0, 3)], shards[2].Steps.Select(s => (s.StartPosition, s.TotalLength)));
        Assert.Equal(2, computed.Usage.Transmissions); // the abandoned step's call and the replay's
        Assert.Equal(200, computed.Usage.BytesUp);
    }

    [Fact]
    public async Task ANewPipelineForAStoredHistoryStartsItsShardsOver()
    {
        var shards = Shards(2);
        List<int> history = [3, 4, 5];
        history.Add(await Next(Pipeline(shards), history));

        // A re-activated session builds a new pipeline: it has fed nothing, so its first step sends the history from 0.
        var again = Pipeline(shards);
        history.Add(await Next(again, history));

        Assert.Equal([3, 4, 5, 6, 7], history);
        Assert.Equal([(0, 3), (0, 4)], shards[0].Steps.Select(s => (s.StartPosition, s.TotalLength)));
        Assert.Equal(0, again.Replays);
    }

    [Fact]
    public async Task TheShardsCountAsHavingSeenAStepOnlyOnceItsTokenIsPicked()
    {
        var shards = Shards(1);
        var pipeline = Pipeline(shards);
        List<int> history = [1, 2];

        await pipeline.ComputeAsync(history, null); // a caller that stops here (the fallback policy is to fail)
        history.Add(await Next(pipeline, history));

        Assert.Equal([(0, 2), (0, 2)], shards[0].Steps.Select(s => (s.StartPosition, s.TotalLength)));
        Assert.Equal([1, 2, 3], history);
    }

    private static async Task<int> Next(TokenPipeline pipeline, List<int> history) =>
        pipeline.Pick(await pipeline.ComputeAsync(history, null), history, promptLength: 1);

    private static RememberingShard[] Shards(int count) => [.. Enumerable.Range(0, count).Select(k => new RememberingShard(k == count - 1))];

    private static TokenPipeline Pipeline(RememberingShard[] shards) =>
        new(new ShardChain(Session, shards.Length, k => shards[k], TimeSpan.FromSeconds(1)), null, new Sampler(SamplingOptions.Greedy), null);

    /// <summary>A shard that carries each position's token as its one activation and asks for a replay as the real shard does.</summary>
    private sealed class RememberingShard(bool last) : IBaseModelShardGrain
    {
        public int Seen;
        public EdgeUsage? Usage;
        public List<ShardStepRequest> Steps { get; } = [];

        public ValueTask<ShardStepResult> Step(ShardStepRequest request)
        {
            Steps.Add(request);
            if (request.StartPosition != 0 && request.StartPosition != Seen) return ValueTask.FromResult(new ShardStepResult(true, null, null));
            Seen = request.TotalLength;
            var tokens = request.Tokens?.Select(t => (float)t).ToArray() ?? request.Hidden!.Data;
            if (!last) return ValueTask.FromResult(new ShardStepResult(false, new Activations(tokens, [tokens.Length, 1]), null, Edge: Usage));
            var logits = new float[Vocab];
            logits[((int)tokens[^1] + 1) % Vocab] = 1;
            return ValueTask.FromResult(new ShardStepResult(false, null, logits, Edge: Usage));
        }

        public ValueTask<ShardDescription> Describe() => throw new NotSupportedException();

        public ValueTask<ShardStats> GetStats() => throw new NotSupportedException();

        public ValueTask Release(string sessionId) => ValueTask.CompletedTask;
    }
}
