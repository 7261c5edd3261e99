using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;

namespace Spa.Grains.Storage;

/// <summary>
/// Grain storage in the cluster's memory, for the one-process host and in-process clusters: each entry lives in one of
/// <see cref="Partitions"/> partition grains (<see cref="MemoryStatePartitionGrain"/>), so every silo of the cluster
/// sees the same entries, as with Orleans' memory storage.
/// <para>
/// Why not Orleans' memory storage: it never removes a cleared entry. It keeps the key with a null value, to remember
/// that the entry once existed, so every finished session left its key for the life of the host (about 150 bytes per
/// completion, 300 MB a day at full rate; docs/reliability.md, soak). Here a cleared entry is gone. A write that carries
/// a version is still refused when there is no entry, as Redis refuses it, so a writer with a stale view of a deleted
/// entry learns of it (<see cref="TokenStreamSubscriptions"/> relies on that).
/// </para>
/// </summary>
public sealed class MemoryStateStorage(string name, IGrainFactory grains, IGrainStorageSerializer serializer) : IGrainStorage
{
    /// <summary>A partition grain serves one call at a time; the entries are spread over several so that storage calls run side by side.</summary>
    public const int Partitions = 16;

    // Resolved once: a grain reference from a string key resolves the interface's type on every call, and a session writes every token.
    private readonly IMemoryStatePartitionGrain?[] _partitions = new IMemoryStatePartitionGrain?[Partitions];

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        if (await PartitionOf(grainId).Read(KeyOf(stateName, grainId)) is not { } entry) return;
        grainState.State = serializer.Deserialize<T>(new BinaryData(entry.Data)) ?? Activator.CreateInstance<T>();
        grainState.ETag = entry.ETag;
        grainState.RecordExists = true;
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var key = KeyOf(stateName, grainId);
        var outcome = await PartitionOf(grainId).Write(key, serializer.Serialize(grainState.State).ToArray(), grainState.ETag);
        grainState.ETag = Checked(outcome, key, grainState.ETag);
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var key = KeyOf(stateName, grainId);
        Checked(await PartitionOf(grainId).Delete(key, grainState.ETag), key, grainState.ETag);
        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    /// <summary>The new version of a change that was done; for one refused, Orleans' exception for a version conflict.</summary>
    private static string? Checked(StoreOutcome outcome, string key, string? expectedETag) => outcome.Done ? outcome.ETag
        : throw new InconsistentStateException(
            $"Version conflict on '{key}': the change expected {expectedETag ?? "no entry"}, the storage has {outcome.ETag ?? "no entry"}",
            outcome.ETag ?? "", expectedETag ?? "");

    private static string KeyOf(string stateName, GrainId grainId) => $"{stateName}/{grainId}";

    // The grain id's uniform hash is the same in every process, unlike a string's.
    private IMemoryStatePartitionGrain PartitionOf(GrainId grainId)
    {
        int partition = (int)(grainId.GetUniformHashCode() % Partitions);
        return _partitions[partition] ??= grains.GetGrain<IMemoryStatePartitionGrain>(MemoryStatePartitionGrain.Key(name, partition));
    }

    /// <summary>The storage registered under <paramref name="name"/>, with the serializer registered under that name or else the silo's.</summary>
    public static IGrainStorage Create(IServiceProvider services, string name) => new MemoryStateStorage(
        name,
        services.GetRequiredService<IGrainFactory>(),
        services.GetKeyedService<IGrainStorageSerializer>(name) ?? services.GetRequiredService<IGrainStorageSerializer>());
}
