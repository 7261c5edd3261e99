using System.Globalization;
using System.Net;
using System.Text;

namespace Spa.Testing;

/// <summary>One sample of the Prometheus text format: <c>name{label="value",...} value [timestamp]</c>.</summary>
public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>A parsed Prometheus text exposition (version 0.0.4): its samples; comments and type lines are skipped.</summary>
public sealed class Exposition(List<Sample> samples)
{
    public IReadOnlyList<Sample> Samples => samples;

    /// <summary>A metric is present under its own name or, for a histogram, its series' suffixes.</summary>
    public bool Has(string name) => samples.Any(s => s.Name == name || s.Name == name + "_bucket" || s.Name == name + "_count" || s.Name == name + "_sum");

    /// <summary>The sum over the samples named <paramref name="name"/> that carry all of <paramref name="labels"/>.</summary>
    public double Sum(string name, params (string Label, string Value)[] labels) =>
        samples.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Label, out var v) && v == l.Value)).Sum(s => s.Value);

    /// <summary>The <c>/metrics</c> of the host <paramref name="client"/> talks to, now.</summary>
    public static async Task<Exposition> ScrapeAsync(HttpClient client)
    {
        using var response = await client.GetAsync("/metrics");
        if (response.StatusCode != HttpStatusCode.OK) throw new HttpRequestException($"GET /metrics answered {(int)response.StatusCode}");
        return Parse(await response.Content.ReadAsStringAsync());
    }

    public static Exposition Parse(string text)
    {
        var samples = new List<Sample>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            int at = 0;
            while (at < line.Length && line[at] != '{' && line[at] != ' ') at++;
            var name = line[..at];
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            if (at < line.Length && line[at] == '{') at = ParseLabels(line, at + 1, labels);
            var fields = line[at..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length is not (1 or 2)) throw new FormatException($"not a sample line: {line}");
            samples.Add(new Sample(name, labels, ParseValue(fields[0])));
        }
        return new Exposition(samples);
    }

    /// <summary>Reads <c>label="value",...}</c> from <paramref name="at"/>, unescaping \\, \" and \n; returns the index after the brace.</summary>
    private static int ParseLabels(string line, int at, Dictionary<string, string> labels)
    {
        while (true)
        {
            while (line[at] is ' ' or ',') at++;
            if (line[at] == '}') return at + 1;
            int equals = line.IndexOf('=', at);
            var label = line[at..equals].Trim();
            at = equals + 1;
            if (line[at] != '"') throw new FormatException($"a label value must be quoted: {line}");
            var value = new StringBuilder();
            for (at++; line[at] != '"'; at++)
            {
                if (line[at] == '\\')
                {
                    at++;
                    value.Append(line[at] == 'n' ? '\n' : line[at]);
                }
                else value.Append(line[at]);
            }
            labels[label] = value.ToString();
            at++;
        }
    }

    private static double ParseValue(string value) => value switch
    {
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        "NaN" => double.NaN,
        _ => double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture),
    };
}
