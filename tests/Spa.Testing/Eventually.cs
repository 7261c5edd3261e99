using System.Diagnostics;

namespace Spa.Testing;

/// <summary>
/// Waits for something that another thread, grain or process makes true: polls until it holds and fails with what it
/// last saw when time runs out. A probe that throws fails the wait at once (a process that exited, a generation that
/// failed), unless <c>retryOn</c> says the exception means "not yet" (a server that is not listening yet).
/// </summary>
public static class Eventually
{
    private static readonly TimeSpan DefaultInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Polls <paramref name="probe"/> every <paramref name="every"/> (100 ms) until <paramref name="done"/> holds for its
    /// value and returns that value; throws <see cref="TimeoutException"/> after <paramref name="timeout"/>, naming
    /// <paramref name="what"/> was awaited and the last value (or "not yet" exception) seen, then <paramref name="context"/>.
    /// </summary>
    public static async Task<T> Until<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan timeout, string what,
        TimeSpan? every = null, Func<Exception, bool>? retryOn = null, Func<string>? context = null)
    {
        var clock = Stopwatch.StartNew();
        string last = "nothing yet";
        while (true)
        {
            try
            {
                var value = await probe();
                if (done(value)) return value;
                last = value?.ToString() ?? "null";
            }
            catch (Exception e) when (retryOn?.Invoke(e) == true)
            {
                last = $"{e.GetType().Name}: {e.Message}";
            }
            if (clock.Elapsed >= timeout)
                throw new TimeoutException($"waited {timeout.TotalSeconds:0.#} s for {what}; last seen: {last}{(context is null ? "" : "\n" + context())}");
            await Task.Delay(every ?? DefaultInterval);
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it is true; see <see cref="Until{T}"/>.</summary>
    public static Task True(Func<Task<bool>> condition, TimeSpan timeout, string what, TimeSpan? every = null,
        Func<Exception, bool>? retryOn = null, Func<string>? context = null) =>
        Until(condition, held => held, timeout, what, every, retryOn, context);

    /// <summary>Polls <paramref name="condition"/>, which reads state in memory, until it is true; see <see cref="Until{T}"/>.</summary>
    public static Task True(Func<bool> condition, TimeSpan timeout, string what, TimeSpan? every = null, Func<string>? context = null) =>
        Until(() => Task.FromResult(condition()), held => held, timeout, what, every, context: context);
}
