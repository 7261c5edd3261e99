namespace Spa.Grains.Shards;

/// <summary>
/// Which session holds which of a shard's KV-cache slots. A session without a slot takes a free one, else the least
/// recently used session's, which is evicted. A session whose step is in a batch being formed or run is pinned: its
/// slot is never evicted or freed, and a release waits until the step leaves its batch. A session whose slot is gone
/// (or whose shard was re-activated) cannot continue its sequence there and is told to replay its history from
/// position 0, which rebuilds the cache in one prefill. Not thread-safe: the shard grain uses it from its turns only.
/// </summary>
internal sealed class KvSlotTable
{
    private readonly Dictionary<string, (LinkedListNode<string> Node, int Slot)> _sessions = new(StringComparer.Ordinal);
    private readonly LinkedList<string> _recent = new(); // most recently used first
    private readonly Stack<int> _freeSlots = new();
    private readonly HashSet<string> _pinned = new(StringComparer.Ordinal);
    private readonly HashSet<string> _releaseAfterBatch = new(StringComparer.Ordinal);
    private readonly Func<int, int> _cachedLength;
    private readonly Action _evicted;

    /// <param name="slots">How many slots the cache has, numbered from 0.</param>
    /// <param name="cachedLength">The positions the cache holds in a slot.</param>
    /// <param name="evicted">Called on each eviction, for the metrics.</param>
    public KvSlotTable(int slots, Func<int, int> cachedLength, Action evicted)
    {
        Slots = slots;
        _cachedLength = cachedLength;
        _evicted = evicted;
        for (int s = slots - 1; s >= 0; s--) _freeSlots.Push(s);
    }

    public int Slots { get; }

    public int SessionsHeld => _sessions.Count;

    /// <summary>Slots taken from the least recently used session for another one.</summary>
    public long Evictions { get; private set; }

    /// <summary>
    /// True when a step from position <paramref name="start"/> does not continue what the session's slot holds (a slot
    /// it no longer has holds nothing); a step from 0 never needs a replay, it starts the sequence over.
    /// </summary>
    public bool NeedsReplay(string session, int start)
    {
        int cached = _sessions.TryGetValue(session, out var held) ? _cachedLength(held.Slot) : 0;
        return start != 0 && start != cached;
    }

    /// <summary>True while the session's step is in a batch being formed or run.</summary>
    public bool IsPinned(string session) => _pinned.Contains(session);

    /// <summary>
    /// The session's slot, now its most recently used: the one it holds, else a free one, else the least recently used
    /// unpinned session's; -1 when every slot is pinned.
    /// </summary>
    public int Acquire(string session)
    {
        if (_sessions.TryGetValue(session, out var held))
        {
            _recent.Remove(held.Node);
            _recent.AddFirst(held.Node);
            return held.Slot;
        }
        if (!_freeSlots.TryPop(out int slot))
        {
            var victim = _recent.Last;
            while (victim is not null && _pinned.Contains(victim.Value)) victim = victim.Previous;
            if (victim is null) return -1;
            _recent.Remove(victim);
            slot = _sessions[victim.Value].Slot;
            _sessions.Remove(victim.Value);
            Evictions++;
            _evicted();
        }
        _sessions[session] = (_recent.AddFirst(session), slot);
        return slot;
    }

    /// <summary>The session's step joined a batch: its slot stays until <see cref="Unpin"/>.</summary>
    public void Pin(string session) => _pinned.Add(session);

    /// <summary>The session's step left its batch: a release that came meanwhile frees its slot now.</summary>
    public void Unpin(string session)
    {
        _pinned.Remove(session);
        if (_releaseAfterBatch.Remove(session)) Free(session);
    }

    /// <summary>Frees the session's slot, if it holds one; a pinned session's when its step leaves its batch.</summary>
    public void Release(string session)
    {
        if (_pinned.Contains(session)) _releaseAfterBatch.Add(session);
        else Free(session);
    }

    private void Free(string session)
    {
        if (_sessions.Remove(session, out var held))
        {
            _recent.Remove(held.Node);
            _freeSlots.Push(held.Slot);
        }
    }
}
