using Orleans.Storage;

namespace Spa.Grains.Storage;

/// <summary>One stored entry: the serialized state and its version.</summary>
[GenerateSerializer, Immutable, Alias("Spa.Grains.Storage.StoredEntry")]
internal sealed record StoredEntry([property: Id(0)] byte[] Data, [property: Id(1)] string ETag);

/// <summary>
/// The outcome of a change under a version check: done (<see cref="ETag"/> is the new version, null after a delete), or
/// refused because the stored version differs (<see cref="ETag"/> is the stored one, null when there is no entry).
/// </summary>
[GenerateSerializer, Immutable, Alias("Spa.Grains.Storage.StoreOutcome")]
internal readonly record struct StoreOutcome([property: Id(0)] bool Done, [property: Id(1)] string? ETag);

/// <summary>
/// One partition of a <see cref="MemoryStateStorage"/>. Internal to the silos, unlike the grains that clients call,
/// so it is declared here rather than in the abstractions.
/// </summary>
[Alias("Spa.Grains.Storage.IMemoryStatePartitionGrain")]
internal interface IMemoryStatePartitionGrain : IGrainWithStringKey
{
    /// <summary>The entry under <paramref name="key"/>; null when there is none.</summary>
    [Alias("Read")]
    ValueTask<StoredEntry?> Read(string key);

    /// <summary>
    /// Stores <paramref name="data"/> under <paramref name="key"/> if <paramref name="expectedETag"/> is the stored
    /// version (null: there is no entry). A refusal is returned rather than thrown: Orleans deactivates a grain that
    /// throws <see cref="InconsistentStateException"/>, and this one's entries would go with it.
    /// </summary>
    [Alias("Write")]
    ValueTask<StoreOutcome> Write(string key, [Immutable] byte[] data, string? expectedETag);

    /// <summary>Removes the entry under <paramref name="key"/>, on the same version check as <see cref="Write"/>.</summary>
    [Alias("Delete")]
    ValueTask<StoreOutcome> Delete(string key, string? expectedETag);
}

/// <summary>
/// The entries of one partition, in a dictionary that holds exactly the entries that exist. Kept alive: its entries
/// are the only copy, and an activation collected for being idle would drop them.
/// </summary>
[KeepAlive]
internal sealed class MemoryStatePartitionGrain(GrainMetrics metrics) : Grain, IMemoryStatePartitionGrain
{
    private readonly Dictionary<string, StoredEntry> _entries = new(StringComparer.Ordinal);
    private string? _storage;

    /// <summary>The key of partition <paramref name="partition"/> of storage <paramref name="storage"/>: "{storage}/{partition}".</summary>
    public static string Key(string storage, int partition) => $"{storage}/{partition}";

    /// <summary>The storage this partition belongs to, the label of its metrics: its key without the partition.</summary>
    private string Storage => _storage ??= StorageOf(this.GetPrimaryKeyString());

    private static string StorageOf(string partitionKey) => partitionKey[..partitionKey.LastIndexOf('/')];

    public ValueTask<StoredEntry?> Read(string key) => ValueTask.FromResult(_entries.GetValueOrDefault(key));

    public ValueTask<StoreOutcome> Write(string key, byte[] data, string? expectedETag)
    {
        var stored = _entries.GetValueOrDefault(key);
        if (Refusal(stored, expectedETag) is { } refused) return ValueTask.FromResult(refused);
        var entry = new StoredEntry(data, Guid.NewGuid().ToString("N"));
        _entries[key] = entry;
        metrics.MemoryStorageChanged(Storage, stored is null ? 1 : 0, data.LongLength - (stored?.Data.LongLength ?? 0));
        return ValueTask.FromResult(new StoreOutcome(true, entry.ETag));
    }

    public ValueTask<StoreOutcome> Delete(string key, string? expectedETag)
    {
        var stored = _entries.GetValueOrDefault(key);
        if (Refusal(stored, expectedETag) is { } refused) return ValueTask.FromResult(refused);
        if (stored is not null && _entries.Remove(key)) metrics.MemoryStorageChanged(Storage, -1, -stored.Data.LongLength);
        return ValueTask.FromResult(new StoreOutcome(true, null));
    }

    /// <summary>The version rule of every change: null when <paramref name="expectedETag"/> is the stored version (null: no entry), else the refusal.</summary>
    private static StoreOutcome? Refusal(StoredEntry? stored, string? expectedETag) =>
        stored?.ETag == expectedETag ? null : new StoreOutcome(false, stored?.ETag);
}
