using System.Text.Json;
using System.Text.Json.Serialization;
using Spa.Edge;
using Spa.Grains.Abstractions;
using Spa.Model.Latency;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Spa.LoadTest;

/// <summary>A kind of simulated device: what it computes with and the link it talks over, and its share of the fleet.</summary>
public sealed record DeviceGroup(string Name, double Share, DeviceProfile Device, LinkProfile Link)
{
    /// <summary>The profile the cluster's simulated device applies: the latency model's device and link, jitter and loss included.</summary>
    public EdgeProfile Edge { get; } = EdgeProfiles.Validate(EdgeProfiles.Of(Device, Link) with { Name = Name });
}

/// <summary>
/// The devices a run simulates: groups of device and link profiles with their shares, from a fleet file (JSON or
/// YAML) or one built-in profile. A group starts from a built-in <c>profile</c> (phone-4g by default) and any figure it
/// gives replaces that profile's:
/// <code>
/// groups:
///   - name: commuters
///     share: 3
///     profile: phone-4g
///     jitter_ms: 10
///   - name: home
///     share: 1
///     profile: laptop-wifi
///     rtt_ms: 25
///     loss: 0.01
/// </code>
/// Figures: <c>cores</c>, <c>flops_per_core</c>, <c>rtt_ms</c>, <c>jitter_ms</c>, <c>up_mbps</c>, <c>down_mbps</c>, <c>loss</c>.
/// </summary>
public sealed class Fleet
{
    public const string DefaultProfile = "phone-4g";

    private Fleet(IReadOnlyList<DeviceGroup> groups) => Groups = groups;

    public IReadOnlyList<DeviceGroup> Groups { get; }

    /// <summary>The built-in device and link pairs, by name: phone-4g, phone-5g, laptop-wifi, server-lan (the paper's Table 2 setting).</summary>
    public static IReadOnlyList<DeviceGroup> BuiltIn { get; } =
    [
        new("phone-4g", 1, Profiles.Phone, Profiles.Lte),
        new("phone-5g", 1, Profiles.Phone, Profiles.FiveG),
        new("laptop-wifi", 1, Profiles.Laptop, Profiles.Wifi),
        new("server-lan", 1, Profiles.Server, Profiles.Lan),
    ];

    /// <summary>
    /// Devices that are spa-device processes on this machine: their link is the real loopback TCP connection, which
    /// the latency model sees as no delay, and their compute is this machine's (a laptop's profile).
    /// </summary>
    public static Fleet Processes { get; } = new([new DeviceGroup("process-loopback", 1, Profiles.Laptop, new LinkProfile("loopback", 0, 1e6, 1e6))]);

    public static DeviceGroup Named(string name) =>
        BuiltIn.FirstOrDefault(g => string.Equals(g.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown profile '{name}': use one of {string.Join(", ", BuiltIn.Select(g => g.Name))}");

    /// <summary>Every device on the built-in profiles named, in equal shares.</summary>
    public static Fleet Of(IEnumerable<string> profiles)
    {
        var groups = profiles.Select(Named).ToList();
        return groups.Count > 0 ? new Fleet(groups) : throw new ArgumentException("name at least one device profile");
    }

    /// <summary>Reads a fleet file: YAML for .yaml and .yml, JSON otherwise.</summary>
    public static Fleet Load(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"--fleet: no file at {path}");
        var text = File.ReadAllText(path);
        bool yaml = Path.GetExtension(path).ToLowerInvariant() is ".yaml" or ".yml";
        FleetFile? file;
        try
        {
            file = yaml
                ? new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build().Deserialize<FleetFile>(text)
                : JsonSerializer.Deserialize<FleetFile>(text, Json);
        }
        catch (Exception e) when (e is JsonException or YamlException)
        {
            throw new ArgumentException($"--fleet: {path} is not a fleet file ({e.Message.ReplaceLineEndings(" ")})");
        }
        if (file?.Groups is not { Count: > 0 } entries) throw new ArgumentException($"--fleet: {path} has no groups");
        var groups = new List<DeviceGroup>();
        foreach (var (entry, index) in entries.Select((e, i) => (e, i)))
        {
            string where = $"--fleet: group {index + 1}";
            try
            {
                groups.Add(entry.ToGroup(index));
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"{where}: {e.Message}");
            }
        }
        if (groups.Select(g => g.Name).Distinct(StringComparer.OrdinalIgnoreCase).Count() != groups.Count)
            throw new ArgumentException($"--fleet: group names must differ ({string.Join(", ", groups.Select(g => g.Name))})");
        return new Fleet(groups);
    }

    /// <summary>
    /// The group of each of <paramref name="devices"/> devices: counts in proportion to the shares (largest remainder),
    /// interleaved, so that the first devices a run takes already mix the groups as the fleet does.
    /// </summary>
    public DeviceGroup[] Assign(int devices)
    {
        double total = Groups.Sum(g => g.Share);
        var exact = Groups.Select(g => devices * g.Share / total).ToArray();
        var counts = exact.Select(x => (int)Math.Floor(x)).ToArray();
        foreach (int g in Enumerable.Range(0, Groups.Count).OrderByDescending(g => exact[g] - counts[g]).Take(devices - counts.Sum()))
            counts[g]++;
        return [.. Enumerable.Range(0, Groups.Count)
            .SelectMany(g => Enumerable.Range(0, counts[g]).Select(k => (Group: Groups[g], Place: (k + 0.5) / counts[g])))
            .OrderBy(x => x.Place)
            .Select(x => x.Group)];
    }

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    private sealed class FleetFile
    {
        public List<GroupEntry>? Groups { get; set; }
    }

    private sealed class GroupEntry
    {
        public string? Name { get; set; }
        public double? Share { get; set; }
        public string? Profile { get; set; }
        public int? Cores { get; set; }
        public double? FlopsPerCore { get; set; }
        public double? RttMs { get; set; }
        public double? JitterMs { get; set; }
        public double? UpMbps { get; set; }
        public double? DownMbps { get; set; }
        public double? Loss { get; set; }

        public DeviceGroup ToGroup(int index)
        {
            var start = Named(Profile ?? DefaultProfile);
            double share = Share ?? 1;
            if (!(share > 0 && double.IsFinite(share))) throw new ArgumentException($"share must be positive, got {share}");
            try
            {
                var device = new DeviceProfile(start.Device.Name, Cores ?? start.Device.Cores, FlopsPerCore ?? start.Device.FlopsPerCore);
                var link = new LinkProfile(start.Link.Name, RttMs ?? start.Link.RoundTripMs, UpMbps ?? start.Link.UpMbps, DownMbps ?? start.Link.DownMbps,
                    JitterMs ?? start.Link.JitterMs, Loss ?? start.Link.Loss);
                return new DeviceGroup(Name ?? $"group-{index + 1}", share, device, link);
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new ArgumentException(e.Message.Split(" (Parameter")[0].ReplaceLineEndings(" "));
            }
        }
    }
}
