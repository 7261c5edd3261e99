using Orleans.Streams;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Sessions;

/// <summary>
/// Publishes a session's tokens on its stream (<c>spa-tokens/{sessionId}</c>) in order: each publication starts after the
/// previous one's, in a later turn of the session than the token's step, so that it runs while the next token is in the
/// shards instead of before; each is tried again across a silo loss until <paramref name="retry"/> passes.
/// </summary>
/// <param name="stream">The session's stream, asked for at the first token.</param>
public sealed class TokenPublisher(string sessionId, Func<IAsyncStream<TokenEvent>> stream, TimeSpan retry)
{
    private IAsyncStream<TokenEvent>? _stream;

    /// <summary>The last token's publication.</summary>
    public Task Published { get; private set; } = Task.CompletedTask;

    /// <summary>
    /// Queues the token's publication behind the previous one's and returns at once; when the previous one has failed,
    /// returns its failure instead, so that the generation stops at the next token as it would have waited for it.
    /// </summary>
    public Task PublishAsync(TokenEvent token)
    {
        var previous = Published;
        Published = PublishAfter(previous, token);
        return previous.IsFaulted ? previous : Task.CompletedTask;
    }

    private async Task PublishAfter(Task previous, TokenEvent token)
    {
        await previous;
        await Task.Yield(); // the rest runs in a later turn of the session's scheduler, once the step awaits its shards
        var target = _stream ??= stream();
        await SiloLoss.RetryAsync(() => target.OnNextAsync(token), $"publishing token {token.Index} of session '{sessionId}'", retry);
    }
}
