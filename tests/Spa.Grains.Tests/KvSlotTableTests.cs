using Spa.Grains.Shards;

namespace Spa.Grains.Tests;

/// <summary>A shard's session → KV-cache slot table, without a cluster: LRU eviction, pinning, releases and replays.</summary>
public sealed class KvSlotTableTests
{
    private readonly Dictionary<int, int> _lengths = []; // slot -> positions the cache holds
    private int _evicted;

    private KvSlotTable Table(int slots) => new(slots, slot => _lengths.GetValueOrDefault(slot), () => _evicted++);

    [Fact]
    public void ASessionWithoutASlotIsToldToReplay()
    {
        var table = Table(2);
        Assert.True(table.NeedsReplay("a", 5));
        Assert.False(table.NeedsReplay("a", 0));
    }

    [Fact]
    public void ASessionIsToldToReplayUnlessItContinuesWhatItsSlotHolds()
    {
        var table = Table(2);
        _lengths[table.Acquire("a")] = 5;
        Assert.False(table.NeedsReplay("a", 5));
        Assert.False(table.NeedsReplay("a", 0));
        Assert.True(table.NeedsReplay("a", 3));
        Assert.True(table.NeedsReplay("a", 6));
    }

    [Fact]
    public void ASessionKeepsItsSlot()
    {
        var table = Table(2);
        int slot = table.Acquire("a");
        table.Acquire("b");
        Assert.Equal(slot, table.Acquire("a"));
        Assert.Equal(2, table.SessionsHeld);
    }

    [Fact]
    public void TheLeastRecentlyUsedSessionLosesItsSlot()
    {
        var table = Table(2);
        int a = table.Acquire("a"), b = table.Acquire("b");
        table.Acquire("a"); // b is now the least recently used
        _lengths[b] = 4;

        Assert.Equal(b, table.Acquire("c"));
        Assert.Equal(a, table.Acquire("a"));
        Assert.True(table.NeedsReplay("b", 4));
        Assert.Equal((1L, 1), (table.Evictions, _evicted));
        Assert.Equal(2, table.SessionsHeld);
    }

    [Fact]
    public void APinnedSessionIsNeverEvicted()
    {
        var table = Table(2);
        int a = table.Acquire("a"), b = table.Acquire("b");
        table.Pin("a"); // the least recently used, but in a batch

        Assert.Equal(b, table.Acquire("c"));
        Assert.Equal(a, table.Acquire("a"));
        Assert.Equal(1, _evicted);
    }

    [Fact]
    public void WhenEverySlotIsPinnedNoSlotIsGivenUntilOneIsUnpinned()
    {
        var table = Table(2);
        int a = table.Acquire("a");
        table.Acquire("b");
        table.Pin("a");
        table.Pin("b");

        Assert.Equal(-1, table.Acquire("c"));
        Assert.Equal((0L, 2), (table.Evictions, table.SessionsHeld));

        table.Unpin("a");
        Assert.Equal(a, table.Acquire("c"));
        Assert.Equal(1L, table.Evictions);
    }

    [Fact]
    public void AReleasedSlotIsTakenWithoutAnEviction()
    {
        var table = Table(1);
        int a = table.Acquire("a");
        table.Release("a");

        Assert.Equal(0, table.SessionsHeld);
        Assert.Equal(a, table.Acquire("b"));
        Assert.Equal(0, _evicted);
    }

    [Fact]
    public void APinnedSessionsReleaseFreesItsSlotWhenItLeavesItsBatch()
    {
        var table = Table(1);
        int a = table.Acquire("a");
        _lengths[a] = 3;
        table.Pin("a");
        table.Release("a");

        Assert.Equal(1, table.SessionsHeld);
        Assert.False(table.NeedsReplay("a", 3));
        Assert.Equal(-1, table.Acquire("b"));

        table.Unpin("a");
        Assert.Equal(0, table.SessionsHeld);
        Assert.Equal(a, table.Acquire("b"));
        Assert.Equal(0, _evicted);
    }

    [Fact]
    public void AnUnpinnedSessionKeepsItsSlotWhenNoReleaseCame()
    {
        var table = Table(1);
        int a = table.Acquire("a");
        table.Pin("a");
        table.Unpin("a");

        Assert.False(table.IsPinned("a"));
        Assert.Equal(a, table.Acquire("a"));
        Assert.Equal(1, table.SessionsHeld);
    }
}
