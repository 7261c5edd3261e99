using Orleans.Streams;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Sessions;

/// <summary>
/// Publishes a session's tokens on its stream (<c>spa-tokens/{sessionId}</c>) in order: one publication in flight at a
/// time, each running while the next token is computed, and tried again across a silo loss until
/// <paramref name="retry"/> passes.
/// </summary>
/// <param name="stream">The session's stream, asked for at the first token.</param>
public sealed class TokenPublisher(string sessionId, Func<IAsyncStream<TokenEvent>> stream, TimeSpan retry)
{
    private IAsyncStream<TokenEvent>? _stream;

    /// <summary>The last token's publication.</summary>
    public Task Published { get; private set; } = Task.CompletedTask;

    /// <summary>Waits for the previous token's publication, then starts this one's.</summary>
    public async Task PublishAsync(TokenEvent token)
    {
        await Published;
        var target = _stream ??= stream();
        Published = SiloLoss.RetryAsync(() => target.OnNextAsync(token), $"publishing token {token.Index} of session '{sessionId}'", retry);
    }
}
