using Spa.Model.Evaluation;
using Spa.Model.Plugins;

namespace Spa.Model.Training;

/// <summary>
/// Sets a gated plugin's tau on held-out data of its own user, as the user's device would on its own data: the cloud
/// never sees it. The held-out positions (<see cref="TeacherForcedPositions"/>, measured in the mode that always asks:
/// parallel for spa, side for switch) say, for every tau, the share of the always-asking mode's accuracy on the scored
/// positions that the gated mode keeps, and its round trips per token; <see cref="ForQuality"/> and
/// <see cref="ForBudget"/> pick tau from them.
/// </summary>
public static class TauCalibrator
{
    /// <summary>
    /// The largest tau (the fewest round trips) at which the gated mode keeps <paramref name="share"/> of the always-asking
    /// mode's accuracy on the scored positions.
    /// </summary>
    public static (double Tau, TauCalibration Calibration) ForQuality(TeacherForcedPositions data, double share)
    {
        if (!(share is > 0 and <= 1)) throw new ArgumentException($"the target quality is a share of the always-asking mode's in (0, 1], got {share}");
        var sweep = Sweep(data);
        var chosen = sweep.FirstOrDefault(s => s.Quality >= share - 1e-12) ?? sweep[^1];
        return (chosen.Tau, new TauCalibration("quality", share, chosen.Quality, chosen.M, ScoredCount(data)));
    }

    /// <summary>The smallest tau (the most round trips) that keeps M on the held-out positions at or under <paramref name="budget"/>.</summary>
    public static (double Tau, TauCalibration Calibration) ForBudget(TeacherForcedPositions data, double budget)
    {
        if (!(budget is >= 0 and <= 1)) throw new ArgumentException($"the round-trip budget must be in [0, 1], got {budget}");
        var chosen = Sweep(data).Last(s => s.M <= budget + 1e-12);
        return (chosen.Tau, new TauCalibration("m-budget", budget, chosen.Quality, chosen.M, ScoredCount(data)));
    }

    private sealed record Point(double Tau, double Quality, double M);

    // Sends positions in order of falling probability; one point per distinct probability, tau halfway to the next
    // lower one, so that p > tau sends exactly the positions above it. The first point sends nothing.
    private static List<Point> Sweep(TeacherForcedPositions data)
    {
        var probability = data.Probability ?? throw new ArgumentException("only a plugin with a gate (trained for switch or spa) has a tau to set");
        if (data.Count == 0) throw new ArgumentException("the held-out data has no target positions to set tau on");
        int reference = 0, correct = 0;
        for (int i = 0; i < data.Count; i++)
        {
            if (!data.Scored[i]) continue;
            if (data.PluginPrediction[i] == data.Target[i]) reference++;
            if (data.BasePrediction[i] == data.Target[i]) correct++;
        }
        if (reference == 0) throw new ArgumentException("the always-asking mode predicts none of the held-out scored positions, so there is no quality to keep");
        var order = Enumerable.Range(0, data.Count).OrderByDescending(i => probability[i]).ToArray();
        var points = new List<Point>();
        int sent = 0;
        double previous = 1;
        for (int k = 0; k <= order.Length; k++)
        {
            double next = k < order.Length ? probability[order[k]] : 0;
            if (k == order.Length || next < previous)
                points.Add(new Point(k == 0 ? (1 + next) / 2 : (previous + next) / 2, (double)correct / reference, (double)sent / data.Count));
            if (k == order.Length) break;
            int i = order[k];
            sent++;
            if (data.Scored[i])
                correct += (data.PluginPrediction[i] == data.Target[i] ? 1 : 0) - (data.BasePrediction[i] == data.Target[i] ? 1 : 0);
            previous = next;
        }
        return points;
    }

    private static long ScoredCount(TeacherForcedPositions data) => data.Scored.Count(s => s);
}
