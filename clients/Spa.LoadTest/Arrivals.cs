using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Spa.LoadTest;

/// <summary>The open loop's arrivals: a Poisson process, its gaps drawn from <c>random</c>, timed on the run's clock.</summary>
public static class Arrivals
{
    /// <summary>Waits for each next arrival (exponential gaps of mean 1 / <paramref name="rate"/> seconds) and yields its number.</summary>
    public static async IAsyncEnumerable<int> Poisson(Random random, double rate, Stopwatch clock, [EnumeratorCancellation] CancellationToken cancellation)
    {
        double next = 0;
        for (int arrival = 0; ; arrival++)
        {
            next += -Math.Log(1 - random.NextDouble()) / rate;
            var wait = TimeSpan.FromSeconds(next) - clock.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellation);
            yield return arrival;
        }
    }
}
