namespace Spa.Model.Evaluation;

/// <summary>The mean of per-user figures with its 95% confidence interval (Student's t, n - 1 degrees of freedom).</summary>
public sealed record MeanInterval(double Mean, double Low, double High, int Count)
{
    // t quantiles at 0.975 for 1..30 degrees of freedom; beyond 30 the normal's 1.96 is within 2% of them.
    private static readonly double[] T975 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    /// <summary>The mean and interval of the finite values; with one value the interval is that value.</summary>
    public static MeanInterval Of(IEnumerable<double> values)
    {
        var finite = values.Where(double.IsFinite).ToArray();
        if (finite.Length == 0) return new MeanInterval(double.NaN, double.NaN, double.NaN, 0);
        double mean = finite.Average();
        if (finite.Length == 1) return new MeanInterval(mean, mean, mean, 1);
        double variance = finite.Sum(v => (v - mean) * (v - mean)) / (finite.Length - 1);
        int df = finite.Length - 1;
        double half = (df <= T975.Length ? T975[df - 1] : 1.96) * Math.Sqrt(variance / finite.Length);
        return new MeanInterval(mean, mean - half, mean + half, finite.Length);
    }

    /// <summary>"mean [low, high]" with the given format.</summary>
    public string Format(string format = "F2") =>
        Count == 0 ? "-" : $"{Mean.ToString(format, System.Globalization.CultureInfo.InvariantCulture)} [{Low.ToString(format, System.Globalization.CultureInfo.InvariantCulture)}, {High.ToString(format, System.Globalization.CultureInfo.InvariantCulture)}]";
}
