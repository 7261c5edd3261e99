using System.Diagnostics;

namespace Spa.Grains.Abstractions;

/// <summary>How long a stream of tokens (or pieces of text) stalled because of a fault injected at one instant.</summary>
public static class Recovery
{
    /// <summary>
    /// Milliseconds from <paramref name="faultAt"/> to the arrival that ended the longest gap after it (Stopwatch
    /// timestamps, in order); tokens already on their way when the fault struck are not taken for the recovery. Null
    /// when nothing arrived after the fault.
    /// </summary>
    public static double? Milliseconds(IReadOnlyList<long> arrivals, long faultAt)
    {
        long longest = -1, previous = faultAt;
        long? ended = null;
        foreach (var at in arrivals.Where(at => at > faultAt))
        {
            if (at - previous > longest) (longest, ended) = (at - previous, at);
            previous = at;
        }
        return ended is { } end ? Stopwatch.GetElapsedTime(faultAt, end).TotalMilliseconds : null;
    }
}
