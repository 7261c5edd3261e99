using System.Reflection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Storage;

namespace Spa.Grains;

/// <summary>
/// Deletes the stored pub-sub state of a session's token stream when the session is deleted. Orleans clears a stream's
/// rendezvous state only when its last producer unregisters, and the memory streams' pulling agent, the producer of
/// every token stream, forgets an inactive stream without unregistering (it does so only when it shuts down): without
/// this, every completion ever made would leave one entry in <see cref="SpaGrainsHosting.PubSubStorage"/>.
/// </summary>
/// <remarks>
/// The rendezvous grain and its state class are Orleans-internal: the state is read and cleared through the storage by
/// the names Orleans gives them, and <c>TokenStreamStateTests</c> fails if they stop matching.
/// </remarks>
public sealed class TokenStreamState(IServiceProvider services, ILogger<TokenStreamState> logger)
{
    private const string RendezvousGrainType = "pubsubrendezvous";
    private const string RendezvousStateName = "PubSubRendezvousGrain";
    private const string RendezvousStateClass = "Orleans.Streams.PubSubGrainState, Orleans.Streaming";

    private static readonly Type StateClass = Type.GetType(RendezvousStateClass)
        ?? throw new InvalidOperationException($"Orleans has no class {RendezvousStateClass} (the token streams' pub-sub state) any more");

    private static readonly MethodInfo ForgetOfState = typeof(TokenStreamState).GetMethod(nameof(Forget), BindingFlags.NonPublic | BindingFlags.Static)!
        .MakeGenericMethod(StateClass);

    /// <summary>
    /// Deletes the stored pub-sub state of <paramref name="sessionId"/>'s token stream; returns whether there was any.
    /// A storage failure is logged, not thrown: the session is deleted all the same.
    /// </summary>
    public async Task<bool> ForgetAsync(string sessionId)
    {
        // The rendezvous looks for a storage named after the stream provider first, then the default pub-sub one.
        var storage = services.GetKeyedService<IGrainStorage>(TokenStreams.Provider)
                      ?? services.GetRequiredKeyedService<IGrainStorage>(SpaGrainsHosting.PubSubStorage);
        var rendezvous = GrainId.Create(RendezvousGrainType, $"{TokenStreams.Provider}/{TokenStreams.For(sessionId)}");
        try
        {
            return await (Task<bool>)ForgetOfState.Invoke(null, [storage, rendezvous])!;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning(e, "could not delete the stream state of session {Session}; it stays in {Storage}", sessionId, SpaGrainsHosting.PubSubStorage);
            return false;
        }
    }

    private static async Task<bool> Forget<T>(IGrainStorage storage, GrainId rendezvous) where T : new()
    {
        var stored = new GrainState<T>();
        await storage.ReadStateAsync(RendezvousStateName, rendezvous, stored);
        if (!stored.RecordExists) return false;
        await storage.ClearStateAsync(RendezvousStateName, rendezvous, stored);
        return true;
    }
}
