using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Storage;
using Spa.Grains.Abstractions;

namespace Spa.Grains;

/// <summary>
/// The stored pub-sub state of the token streams: their producers and subscribers. Orleans keeps a stream's pub-sub
/// state in the grain storage named after its stream provider when there is one (else in "PubSubStore"), so this
/// storage, registered under <see cref="TokenStreams.Provider"/>, holds every token stream's state and nothing else. It
/// keeps it in <see cref="SpaGrainsHosting.PubSubStorage"/> (memory in one process, Redis in a cluster) and adds what
/// Orleans lacks: <see cref="ForgetAsync"/> deletes a finished session's stream state.
/// <para>
/// Why: Orleans deletes a stream's stored state only when its last producer unregisters, and the memory streams'
/// pulling agent, the producer of every token stream, drops an inactive stream without unregistering. So every
/// completion left its stream's entry (about 1.2 KB in memory storage) for the life of the host (docs/reliability.md,
/// soak). A session that ends forgets its stream.
/// </para>
/// <para>
/// The stream's pub-sub activation may still be alive then with the entry's old version, and write it later (when a
/// subscriber leaves, or the agent unregisters at shutdown). Such a write fails the version check; when the entry is
/// gone it is taken as done rather than stored again, since storing it again would keep it for good. A version
/// conflict on an entry that exists is a real one and is thrown as it came.
/// </para>
/// </summary>
public sealed class TokenStreamSubscriptions(
    [FromKeyedServices(SpaGrainsHosting.PubSubStorage)] IGrainStorage stored, ILogger<TokenStreamSubscriptions> logger) : IGrainStorage
{
    /// <summary>
    /// What deleting an entry takes: the state's name, its type and the pub-sub grain type are Orleans' own (internal),
    /// so they are learnt from the first call Orleans makes here rather than named.
    /// </summary>
    private sealed record EntryShape(string StateName, GrainType GrainType, Func<string, GrainId, Task<bool>> Delete);

    private volatile EntryShape? _shape;

    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        Learn<T>(stateName, grainId);
        return stored.ReadStateAsync(stateName, grainId, grainState);
    }

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        Learn<T>(stateName, grainId);
        return UnlessFinished<T>(stateName, grainId, () => stored.WriteStateAsync(stateName, grainId, grainState));
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        Learn<T>(stateName, grainId);
        if (await UnlessFinished<T>(stateName, grainId, () => stored.ClearStateAsync(stateName, grainId, grainState))) return;
        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    /// <summary>Runs a change to a stream's entry; returns false when the entry was deleted under it, which is then not stored again.</summary>
    private async Task<bool> UnlessFinished<T>(string stateName, GrainId grainId, Func<Task> change)
    {
        try
        {
            await change();
            return true;
        }
        catch (InconsistentStateException)
        {
            if (await ExistsAs<T>(stateName, grainId)) throw;
            logger.LogDebug("Not storing again the pub-sub state of the finished stream {GrainId}", grainId);
            return false;
        }
    }

    /// <summary>
    /// Deletes the stored pub-sub state of session <paramref name="sessionId"/>'s token stream, if there is one. Returns
    /// whether there was. A host whose storage has not yet seen a pub-sub call cannot tell the entry's shape and
    /// deletes nothing; a stream whose state changes meanwhile, or a storage that fails, keeps it.
    /// </summary>
    public async Task<bool> ForgetAsync(string sessionId)
    {
        if (_shape is not { } shape) return false;
        // A pub-sub grain's key is "{provider}/{stream id}".
        var grainId = GrainId.Create(shape.GrainType, $"{TokenStreams.Provider}/{TokenStreams.For(sessionId)}");
        try
        {
            return await shape.Delete(shape.StateName, grainId);
        }
        catch (InconsistentStateException)
        {
            logger.LogDebug("The pub-sub state of stream {GrainId} changed while it was being deleted; kept", grainId);
            return false;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Housekeeping: a storage that fails here keeps the entry, and the session's end goes on.
            logger.LogWarning(e, "Could not delete the pub-sub state of stream {GrainId}; it stays stored", grainId);
            return false;
        }
    }

    private void Learn<T>(string stateName, GrainId grainId) =>
        _shape ??= new EntryShape(stateName, grainId.Type, DeleteAs<T>);

    private async Task<bool> DeleteAs<T>(string stateName, GrainId grainId)
    {
        var entry = await StoredAs<T>(stateName, grainId);
        if (!entry.RecordExists) return false;
        await stored.ClearStateAsync(stateName, grainId, entry);
        return true;
    }

    private async Task<bool> ExistsAs<T>(string stateName, GrainId grainId) => (await StoredAs<T>(stateName, grainId)).RecordExists;

    private async Task<GrainState<T>> StoredAs<T>(string stateName, GrainId grainId)
    {
        var entry = new GrainState<T>();
        await stored.ReadStateAsync(stateName, grainId, entry);
        return entry;
    }
}
