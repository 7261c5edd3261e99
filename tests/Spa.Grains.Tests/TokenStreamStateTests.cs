using Microsoft.Extensions.DependencyInjection;
using Orleans.Streams;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Tests;

/// <summary>
/// A session's token stream leaves its pub-sub state (producer and subscribers) in grain storage, which Orleans itself
/// never deletes for these streams; ending the session deletes it, also while a subscriber is still on the stream,
/// whose leaving afterwards neither fails nor stores the state again. In the one-process memory storage and in Redis.
/// </summary>
public abstract class TokenStreamStateTests(ClusterFixture fixture)
{
    private const int Tokens = 8;

    [Fact]
    public async Task EndingASessionDeletesItsStreamsStoredStateAndLateSubscribersLeaveCleanly()
    {
        var subscriptions = fixture.Cluster.Silos[0].SiloHost.Services.GetRequiredService<TokenStreamSubscriptions>();
        var prompt = Reference.Encode("Once upon a time");
        string ended = "stream-state-ended", kept = "stream-state-kept";
        var ends = new[] { ended, kept }.ToDictionary(id => id, _ => new TaskCompletionSource());
        var subscribed = new Dictionary<string, StreamSubscriptionHandle<TokenEvent>>();
        foreach (var id in ends.Keys)
        {
            var stream = fixture.Cluster.Client.GetStreamProvider(TokenStreams.Provider).GetStream<TokenEvent>(TokenStreams.For(id));
            subscribed[id] = await stream.SubscribeAsync((token, _) =>
            {
                if (token.Index == Tokens - 1) ends[id].TrySetResult();
                return Task.CompletedTask;
            });
            await fixture.Grains.GetGrain<IDecodingSessionGrain>(id).Generate(new GenerationRequest(prompt, Tokens));
        }
        // The last token received: the pulling agent has registered as the streams' producer, and stored that.
        await Task.WhenAll(ends.Values.Select(end => end.Task)).WaitAsync(TimeSpan.FromSeconds(30));

        await fixture.Grains.GetGrain<IDecodingSessionGrain>(ended).End();
        Assert.False(await subscriptions.ForgetAsync(ended), "the ended session's stream still has stored state");
        // A session that goes on has its stream's state: the check above finds what is there (and this deletes it).
        Assert.True(await subscriptions.ForgetAsync(kept), "a live session's stream has no stored state");

        // Both subscribers leave after their stream's state was deleted under them: their rendezvous writes with an old version.
        foreach (var handle in subscribed.Values) await handle.UnsubscribeAsync();
        Assert.False(await subscriptions.ForgetAsync(ended), "leaving stored the ended stream's state again");
        Assert.False(await subscriptions.ForgetAsync(kept), "leaving stored the deleted stream's state again");
        await fixture.Grains.GetGrain<IDecodingSessionGrain>(kept).End();
    }
}

[Collection(ClusterCollection.Name)]
public sealed class MemoryTokenStreamStateTests(DefaultBudgetCluster fixture) : TokenStreamStateTests(fixture), IClassFixture<DefaultBudgetCluster>;

[Collection(ClusterCollection.Name)]
public sealed class RedisTokenStreamStateTests(RedisStorageCluster fixture) : TokenStreamStateTests(fixture), IClassFixture<RedisStorageCluster>;
