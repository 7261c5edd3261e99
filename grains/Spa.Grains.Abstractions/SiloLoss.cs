using System.Diagnostics;
using System.Runtime.CompilerServices;
using Orleans.Runtime.Messaging;

namespace Spa.Grains.Abstractions;

/// <summary>
/// What a caller does when the silo of the grain it calls dies: Orleans rejects the calls in flight to that silo
/// (<see cref="SiloUnavailableException"/> once membership declares it dead, <see cref="OrleansMessageRejectionException"/>
/// or <see cref="ConnectionFailedException"/> while its connection is gone) or lets them time out (a client's in-flight
/// call waits for <c>ClientMessagingOptions.ResponseTimeout</c>), and a stream whose session activation is gone ends with
/// <see cref="EnumerationAbortedException"/>. A later call reaches a
/// new activation on a survivor, which rebuilds itself from grain storage (a session) or from the session's replay (a
/// shard), so the caller tries again, with growing pauses, until a deadline.
/// </summary>
public static class SiloLoss
{
    private static readonly TimeSpan FirstPause = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LongestPause = TimeSpan.FromMilliseconds(500);

    /// <summary>Whether <paramref name="e"/> says the target's silo died or cannot be reached (another activation may answer).</summary>
    public static bool IsSiloLoss(Exception e) => e is OrleansMessageRejectionException or ConnectionFailedException or TimeoutException or EnumerationAbortedException;

    /// <summary>
    /// Runs <paramref name="call"/> until it returns, throws something other than a silo loss, or <paramref name="deadline"/>
    /// has passed since the first attempt; then throws <see cref="SiloLossException"/> naming <paramref name="what"/>.
    /// </summary>
    public static async Task<T> RetryAsync<T>(Func<Task<T>> call, string what, TimeSpan deadline, CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        var pause = FirstPause;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (Exception e) when (IsSiloLoss(e))
            {
                if (clock.Elapsed + pause > deadline)
                    throw new SiloLossException($"{what} failed for {clock.Elapsed.TotalSeconds:F1} s over {attempt} attempts, the last with: {e.Message}", e);
                await Task.Delay(pause, cancellation);
                pause = Min(pause * 2, LongestPause);
            }
        }
    }

    /// <inheritdoc cref="RetryAsync{T}(Func{Task{T}}, string, TimeSpan, CancellationToken)"/>
    public static Task RetryAsync(Func<Task> call, string what, TimeSpan deadline, CancellationToken cancellation = default) =>
        RetryAsync(async () => { await call(); return true; }, what, deadline, cancellation);

    /// <summary>
    /// A generation's tokens that survive the loss of the session's silo: starts it with
    /// <see cref="IDecodingSessionGrain.GenerateStream"/>, and when the stream breaks with a silo loss, resumes it with
    /// <see cref="IDecodingSessionGrain.ResumeStream"/> from the tokens already received (the session re-activates on a
    /// survivor from its stored history), so no token is missed or repeated. Before the first token it starts again
    /// instead, which gives the same tokens for the same request. <paramref name="onLoss"/> hears of each break.
    /// Gives up with <see cref="SiloLossException"/> when <paramref name="deadline"/> passes without a token.
    /// </summary>
    public static IAsyncEnumerable<TokenEvent> Generate(IDecodingSessionGrain session, GenerationRequest request, TimeSpan deadline,
        Action<Exception>? onLoss = null, CancellationToken cancellation = default) =>
        Follow(received => received == 0 ? session.GenerateStream(request, cancellation) : session.ResumeStream(received, cancellation: cancellation),
            0, deadline, onLoss, cancellation);

    /// <summary>
    /// As <see cref="Generate"/> for a stored generation: <see cref="IDecodingSessionGrain.ResumeStream"/> from token
    /// <paramref name="from"/> up to a budget of at least <paramref name="maxGenerated"/> tokens, resumed again after each break.
    /// </summary>
    public static IAsyncEnumerable<TokenEvent> Resume(IDecodingSessionGrain session, int from, int maxGenerated, TimeSpan deadline,
        Action<Exception>? onLoss = null, CancellationToken cancellation = default) =>
        Follow(received => session.ResumeStream(received, maxGenerated, cancellation), from, deadline, onLoss, cancellation);

    /// <summary>Tokens from index <paramref name="from"/> of the streams <paramref name="open"/> gives for the count received so far.</summary>
    private static async IAsyncEnumerable<TokenEvent> Follow(Func<int, IAsyncEnumerable<TokenEvent>> open, int from, TimeSpan deadline,
        Action<Exception>? onLoss, [EnumeratorCancellation] CancellationToken cancellation)
    {
        int received = from;
        var sinceToken = Stopwatch.StartNew();
        var pause = FirstPause;
        while (true)
        {
            await using var enumerator = open(received).GetAsyncEnumerator(cancellation);
            while (true)
            {
                TokenEvent token;
                try
                {
                    if (!await enumerator.MoveNextAsync()) yield break;
                    token = enumerator.Current;
                }
                catch (Exception e) when (IsSiloLoss(e) && sinceToken.Elapsed + pause <= deadline)
                {
                    onLoss?.Invoke(e);
                    break;
                }
                catch (Exception e) when (IsSiloLoss(e))
                {
                    throw new SiloLossException($"the session's generation found no live silo for {sinceToken.Elapsed.TotalSeconds:F1} s after {received} tokens: {e.Message}", e);
                }
                if (token.Index != received)
                    throw new InvalidOperationException($"the session sent token {token.Index} where token {received} was due");
                received++;
                sinceToken.Restart();
                pause = FirstPause;
                yield return token;
            }
            await Task.Delay(pause, cancellation);
            pause = Min(pause * 2, LongestPause);
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}

/// <summary>A call kept failing because the silo it went to died and no other silo answered before the deadline.</summary>
[GenerateSerializer, Alias("spa.SiloLossException")]
public sealed class SiloLossException : Exception
{
    public SiloLossException(string message) : base(message) { }

    public SiloLossException(string message, Exception inner) : base(message, inner) { }
}
