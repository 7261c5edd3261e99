using Spa.Grains.Sessions;

namespace Spa.Grains.Tests;

/// <summary>How a session's state is written behind its tokens, with a write that the test completes by hand.</summary>
public sealed class WriteBehindTests
{
    [Fact]
    public async Task AWriteStartsEveryNTokensAndAFlushWritesOnlyWhatIsUnwritten()
    {
        var store = new Store();
        var writes = new WriteBehind(store.Write, every: 3);

        for (int i = 0; i < 7; i++)
        {
            writes.TokenAdded();
            store.FinishAll();
        }
        Assert.Equal(2, store.Started);

        var flush = writes.FlushAsync();
        store.FinishAll();
        await flush;
        Assert.Equal(3, store.Started);

        await writes.FlushAsync(); // nothing new
        Assert.Equal(3, store.Started);

        var forced = writes.FlushAsync(always: true);
        store.FinishAll();
        await forced;
        Assert.Equal(4, store.Started);
    }

    [Fact]
    public async Task AFlushWaitsForTheWriteInFlightAndNeverRunsASecondBesideIt()
    {
        var store = new Store();
        var writes = new WriteBehind(store.Write, every: 2);
        writes.TokenAdded();
        writes.TokenAdded(); // this write holds both tokens and stays in flight

        var flush = writes.FlushAsync();
        var forced = writes.FlushAsync(always: true);
        await Task.Yield();
        Assert.False(flush.IsCompleted);
        Assert.Equal(1, store.Started);

        store.FinishAll();
        await flush; // every token was in the write that finished: nothing more to write
        while (!forced.IsCompleted)
        {
            store.FinishAll();
            await Task.Yield();
        }
        await forced;
        Assert.Equal(2, store.Started);
        Assert.Equal(1, store.MostAtOnce);
    }

    private sealed class Store
    {
        private readonly List<TaskCompletionSource> _running = [];

        public int Started { get; private set; }
        public int MostAtOnce { get; private set; }

        public Task Write()
        {
            Started++;
            var write = new TaskCompletionSource();
            _running.Add(write);
            MostAtOnce = Math.Max(MostAtOnce, _running.Count);
            return write.Task;
        }

        public void FinishAll()
        {
            var running = _running.ToArray();
            _running.Clear();
            foreach (var write in running) write.SetResult();
        }
    }
}
