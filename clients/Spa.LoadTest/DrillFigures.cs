using Spa.Grains.Abstractions;

namespace Spa.LoadTest;

/// <summary>
/// What one fault did to the requests in flight when it fired (from their start to the release of their session): how
/// many completed or failed, how many tokens they lost or received beyond the undisturbed run's, and the recovery: from
/// the fault to the token (or the request's end) that ended each request's longest stall after it (tokens already on
/// their way when it fired do not count), the longest and the median.
/// </summary>
public sealed record FaultFigures(string Fault, double AtSeconds, string Outcome, int InFlight, int Completed, int Failed, int Resumed,
    long TokensLost, long TokensExtra, double? RecoveryMaxMs, double? RecoveryMedianMs);

/// <summary>
/// A drill's account over every request of the mode (the warm-up's included), each compared token for token with the same request run undisturbed
/// after the drill: <see cref="Identical"/> requests delivered exactly those tokens; a token of the undisturbed run that
/// was not delivered is lost, a delivered one that it does not have (repeated or different) is extra.
/// </summary>
public sealed record DrillFigures(int Requests, int Identical, int Failed, long TokensLost, long TokensExtra, IReadOnlyList<FaultFigures> Faults)
{
    public static DrillFigures Of(IReadOnlyList<RequestSample> requests, IReadOnlyList<FiredFault> fired, IReadOnlyDictionary<int, int[]> undisturbed)
    {
        var started = requests.Where(s => s.Prompt >= 0).ToList();
        var counts = started.ToDictionary(s => s, s => Compare(s.Delivered, undisturbed[s.Prompt]));
        var faults = fired.Select(fault =>
        {
            var hit = started.Where(s => s.StartedAt <= fault.Timestamp && fault.Timestamp < s.EndedAt).ToList();
            var recoveries = hit.Select(s => Recovery.Milliseconds([.. s.Arrivals(), s.EndedAt], fault.Timestamp)).OfType<double>().Order().ToList();
            return new FaultFigures(fault.Fault.ToString(), Math.Round(fault.AtSeconds, 3), fault.Outcome, hit.Count, hit.Count(s => s.Error is null),
                hit.Count(s => s.Error is not null), hit.Count(s => s.Resumes > 0), hit.Sum(s => counts[s].Lost), hit.Sum(s => counts[s].Extra),
                recoveries.Count == 0 ? null : Math.Round(recoveries[^1], 1), recoveries.Count == 0 ? null : Math.Round(recoveries[recoveries.Count / 2], 1));
        }).ToList();
        return new DrillFigures(started.Count, started.Count(s => s.Delivered.AsSpan().SequenceEqual(undisturbed[s.Prompt])),
            started.Count(s => s.Error is not null), counts.Values.Sum(c => (long)c.Lost), counts.Values.Sum(c => (long)c.Extra), faults);
    }

    /// <summary>
    /// Tokens of <paramref name="expected"/> missing from <paramref name="delivered"/> and tokens delivered beyond it, over
    /// their longest common subsequence: a resumed stream that repeats a token has one extra, a cut one has the rest lost.
    /// </summary>
    public static (int Lost, int Extra) Compare(int[] delivered, int[] expected)
    {
        var row = new int[expected.Length + 1];
        foreach (int token in delivered)
        {
            int diagonal = 0;
            for (int j = 1; j <= expected.Length; j++)
            {
                int above = row[j];
                row[j] = token == expected[j - 1] ? diagonal + 1 : Math.Max(row[j], row[j - 1]);
                diagonal = above;
            }
        }
        int common = row[^1];
        return (expected.Length - common, delivered.Length - common);
    }
}
