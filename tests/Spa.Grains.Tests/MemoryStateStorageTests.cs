using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;

namespace Spa.Grains.Tests;

/// <summary>
/// The one-process grain storage: it keeps what is written under version checks, a cleared entry is gone (the
/// storage's own entry and byte counts go back to where they were, where Orleans' memory storage kept every cleared
/// key), and a write that carries the version of a cleared entry is refused rather than stored again.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class MemoryStateStorageTests(DefaultBudgetCluster fixture) : IClassFixture<DefaultBudgetCluster>
{
    public const string StateName = "memory-storage-test";
    private const int Entries = 40;

    private IServiceProvider Silo => fixture.Cluster.Silos[0].SiloHost.Services;

    private IGrainStorage Storage => Silo.GetRequiredKeyedService<IGrainStorage>(SpaGrainsHosting.SessionStorage);

    [Fact]
    public async Task KeepsWritesUnderVersionChecksAndForgetsClearedEntries()
    {
        using var counts = new StorageCounts(Silo, SpaGrainsHosting.SessionStorage);
        var ids = Enumerable.Range(0, Entries).Select(i => GrainId.Create("storage-test", $"entry-{i}")).ToArray();
        var written = new List<GrainState<int[]>>();
        foreach (var (id, i) in ids.Select((id, i) => (id, i)))
        {
            var state = new GrainState<int[]>([i, i * i, 7]);
            await Storage.WriteStateAsync(StateName, id, state);
            Assert.NotNull(state.ETag);
            Assert.True(state.RecordExists);
            written.Add(state);
        }
        Assert.Equal(Entries, counts.Entries);
        Assert.True(counts.Bytes > 0);

        foreach (var (id, i) in ids.Select((id, i) => (id, i)))
        {
            var read = await Read(id);
            Assert.True(read.RecordExists);
            Assert.Equal(new[] { i, i * i, 7 }, read.State);
            Assert.Equal(written[i].ETag, read.ETag);
        }

        // A first write onto an existing entry, and a write with a version that is not the stored one, are refused.
        await Assert.ThrowsAsync<InconsistentStateException>(() => Storage.WriteStateAsync(StateName, ids[0], new GrainState<int[]>([1])));
        await Assert.ThrowsAsync<InconsistentStateException>(() => Storage.WriteStateAsync(StateName, ids[0], new GrainState<int[]>([1]) { ETag = "not-the-version" }));
        Assert.Equal(new[] { 0, 0, 7 }, (await Read(ids[0])).State);

        var before = written[0].ETag;
        written[0].State = [.. Enumerable.Range(0, 100)];
        await Storage.WriteStateAsync(StateName, ids[0], written[0]);
        Assert.NotEqual(before, written[0].ETag);
        Assert.Equal(Entries, counts.Entries);
        Assert.Equal(Enumerable.Range(0, 100), (await Read(ids[0])).State);

        var stale = written.Select(s => s.ETag).ToArray();
        foreach (var (id, state) in ids.Zip(written)) await Storage.ClearStateAsync(StateName, id, state);
        Assert.Equal(0, counts.Entries);
        Assert.Equal(0, counts.Bytes);
        foreach (var id in ids)
        {
            var read = await Read(id);
            Assert.False(read.RecordExists);
            Assert.Null(read.ETag);
            Assert.Null(read.State);
        }

        // A writer that still holds a cleared entry's version is told, not stored: storing it would bring the entry back for good.
        await Assert.ThrowsAsync<InconsistentStateException>(() => Storage.WriteStateAsync(StateName, ids[1], new GrainState<int[]>([1]) { ETag = stale[1] }));
        Assert.False((await Read(ids[1])).RecordExists);
        var fresh = new GrainState<int[]>([2]);
        await Storage.WriteStateAsync(StateName, ids[1], fresh);
        Assert.Equal(1, counts.Entries);
        await Storage.ClearStateAsync(StateName, ids[1], fresh);
        Assert.Equal(0, counts.Entries);
    }

    [Fact]
    public async Task EndedSessionsLeaveNoEntry()
    {
        using var counts = new StorageCounts(Silo, SpaGrainsHosting.SessionStorage);
        var prompt = Reference.Encode("Once upon a time");
        var sessions = Enumerable.Range(0, 4).Select(i => fixture.Grains.GetGrain<IDecodingSessionGrain>($"storage-ended-{i}")).ToArray();
        foreach (var session in sessions) await session.Generate(new GenerationRequest(prompt, 8));
        Assert.Equal(sessions.Length, counts.Entries);

        foreach (var session in sessions) await session.End();
        Assert.Equal(0, counts.Entries);
        Assert.Equal(0, counts.Bytes);
        foreach (var session in sessions) Assert.Empty(await session.GetHistory());
    }

    [Fact]
    public async Task StoresASessionInTheSessionStoragesFormat()
    {
        using var counts = new StorageCounts(Silo, SpaGrainsHosting.SessionStorage);
        var session = new GrainState<SessionState>(new SessionState { History = [.. Enumerable.Range(0, 64)] });
        var id = GrainId.Create("storage-test", "format");
        await Storage.WriteStateAsync(StateName, id, session);

        var stored = Silo.GetRequiredKeyedService<IGrainStorageSerializer>(SpaGrainsHosting.SessionStorage).Serialize(session.State);
        var json = Silo.GetRequiredService<IGrainStorageSerializer>().Serialize(session.State);
        Assert.Equal(stored.ToMemory().Length, counts.Bytes);
        Assert.NotEqual(json.ToMemory().Length, counts.Bytes);

        await Storage.ClearStateAsync(StateName, id, session);
        Assert.Equal(0, counts.Bytes);
    }

    private Task<GrainState<int[]>> Read(GrainId id) => Read(Storage, id);

    public static async Task<GrainState<int[]>> Read(IGrainStorage storage, GrainId id)
    {
        var state = new GrainState<int[]>();
        await storage.ReadStateAsync(StateName, id, state);
        return state;
    }

    /// <summary>What spa_memory_storage_entries and _bytes of one storage have changed by since this was made, on one silo's meter.</summary>
    private sealed class StorageCounts : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _entries, _bytes;

        public StorageCounts(IServiceProvider silo, string storage)
        {
            var meters = silo.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == meters && instrument.Name is "spa_memory_storage_entries" or "spa_memory_storage_bytes")
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                foreach (var tag in tags)
                    if (tag is { Key: "storage", Value: string name } && name == storage)
                        Interlocked.Add(ref instrument.Name == "spa_memory_storage_entries" ? ref _entries : ref _bytes, value);
            });
            _listener.Start();
        }

        public long Entries => Interlocked.Read(ref _entries);

        public long Bytes => Interlocked.Read(ref _bytes);

        public void Dispose() => _listener.Dispose();
    }
}

/// <summary>The memory storage is the cluster's, not a silo's: what one silo writes or clears, another reads as such.</summary>
[Collection(ClusterCollection.Name)]
public sealed class MemoryStateStorageAcrossSilosTests(NoAcceleratorCluster fixture) : IClassFixture<NoAcceleratorCluster>
{
    [Fact]
    public async Task EverySiloSeesTheSameEntries()
    {
        var storages = fixture.Cluster.Silos.Select(s => s.SiloHost.Services.GetRequiredKeyedService<IGrainStorage>(SpaGrainsHosting.SessionStorage)).ToArray();
        Assert.True(storages.Length >= 2);
        // Ids spread over the partitions, wherever the cluster placed their grains.
        var ids = Enumerable.Range(0, 32).Select(i => GrainId.Create("storage-across", $"entry-{i}")).ToArray();
        var written = new List<GrainState<int[]>>();
        foreach (var (id, i) in ids.Select((id, i) => (id, i)))
        {
            var state = new GrainState<int[]>([i]);
            await storages[0].WriteStateAsync(MemoryStateStorageTests.StateName, id, state);
            written.Add(state);
        }
        foreach (var (id, i) in ids.Select((id, i) => (id, i)))
        {
            var read = await MemoryStateStorageTests.Read(storages[1], id);
            Assert.Equal(new[] { i }, read.State);
            Assert.Equal(written[i].ETag, read.ETag);
            await storages[1].ClearStateAsync(MemoryStateStorageTests.StateName, id, read);
        }
        foreach (var (id, state) in ids.Zip(written))
        {
            Assert.False((await MemoryStateStorageTests.Read(storages[0], id)).RecordExists);
            await Assert.ThrowsAsync<InconsistentStateException>(() => storages[0].WriteStateAsync(MemoryStateStorageTests.StateName, id, state));
        }
    }
}
