using System.Globalization;
using System.Text;
using Spa.Model.Plugins;

namespace Spa.Model.Latency;

/// <summary>A plugin in a mode, with the measured M when a gate decides.</summary>
/// <param name="M">Round trips per generated token. Required for switch and spa (the gate's measured rate); for
/// side and parallel it defaults to the plugin's fixed rate; base never calls the edge.</param>
public sealed record LatencyScenario(PluginKind Kind, CombinationMode Mode, double? M = null);

/// <param name="ParamsPercent">Per-user parameters the mode needs (<see cref="PluginParameters.ForMode"/>) as a
/// percentage of the base's.</param>
public sealed record LatencyRow(PluginKind Kind, CombinationMode Mode, string Device, string Link, double ParamsPercent, LatencyBreakdown Latency);

/// <summary>The analytic latency of several scenarios on every pair of device and link, for reports.</summary>
public static class LatencyTable
{
    /// <param name="cloudSecondsPerToken">Measured, or <see cref="LatencyModel.CloudSecondsPerToken"/>.</param>
    /// <param name="contextTokens">Mean context while generating; only LST's edge time depends on it.</param>
    public static IReadOnlyList<LatencyRow> Build(
        LlamaConfig config,
        PluginDimensions dimensions,
        TapPlacement placement,
        ActivationType activation,
        int contextTokens,
        double cloudSecondsPerToken,
        IEnumerable<LatencyScenario> scenarios,
        IEnumerable<DeviceProfile> devices,
        IEnumerable<LinkProfile> links)
    {
        double baseParameters = LatencyModel.BaseModelCost(config).Parameters;
        var linkList = links.ToList();
        var rows = new List<LatencyRow>();
        foreach (var scenario in scenarios)
        {
            double m = RoundTripsPerToken(config, scenario);
            var traffic = PluginTraffic.For(config, scenario.Kind, dimensions, placement, activation, contextTokens, m);
            double paramsPercent = 100.0 * PluginParameters.ForMode(config, scenario.Kind, scenario.Mode, dimensions) / baseParameters;
            foreach (var device in devices)
            foreach (var link in linkList)
            {
                var latency = LatencyModel.Predict(cloudSecondsPerToken, m, traffic, device, link);
                rows.Add(new LatencyRow(scenario.Kind, scenario.Mode, device.Name, link.Name, paramsPercent, latency));
            }
        }
        return rows;
    }

    public static string ToMarkdown(IEnumerable<LatencyRow> rows)
    {
        var text = new StringBuilder()
            .AppendLine("| plugin | mode | device | link | params % | cloud ms | edge ms | network ms | total ms | M |")
            .AppendLine("|---|---|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var row in rows)
        {
            var l = row.Latency;
            // A base row uses no plugin, whatever kind the scenario named.
            string plugin = row.Mode == CombinationMode.Base ? "-" : PluginNames.Name(row.Kind);
            text.AppendLine(string.Join(" | ",
                "| " + plugin, PluginNames.Name(row.Mode), row.Device, row.Link,
                Format(row.ParamsPercent), Format(l.CloudMs), Format(l.EdgeMs), Format(l.NetworkMs), Format(l.TotalMs),
                Format(l.M) + " |"));
        }
        return text.ToString();
    }

    private static double RoundTripsPerToken(LlamaConfig config, LatencyScenario scenario) => scenario.Mode switch
    {
        CombinationMode.Base when scenario.M is null or 0 => 0,
        CombinationMode.Base => throw new ArgumentException($"base never calls the edge, but M = {scenario.M} was given"),
        CombinationMode.Side or CombinationMode.Parallel => scenario.M ?? PluginTraffic.FixedRoundTripsPerToken(config, scenario.Kind),
        CombinationMode.Switch or CombinationMode.Spa => scenario.M
            ?? throw new ArgumentException($"{PluginNames.Name(scenario.Mode)} needs the measured M: the gate decides how often the edge is called"),
        _ => throw new ArgumentOutOfRangeException(nameof(scenario), scenario.Mode, null),
    };

    // Edge times and plugin shares are often far below 1: show them to three significant digits instead of as 0.
    private static string Format(double value) => value.ToString(Math.Abs(value) < 1 ? "G3" : "0.###", CultureInfo.InvariantCulture);
}
