using System.Globalization;
using TorchSharp;

namespace Spa.Grains.Placement;

/// <summary>
/// How a silo advertises its accelerators in its Orleans silo metadata: under <see cref="Key"/>, a comma-separated list
/// of torch devices ("cuda:0,cuda:1", "cpu"), or <see cref="None"/>.
/// </summary>
public static class AcceleratorMetadata
{
    public const string Key = "spa.accelerator";

    /// <summary>The value of a silo that offers no accelerator: it hosts no shard while another silo offers one.</summary>
    public const string None = "none";

    /// <summary>What a silo counts as when no silo advertises an accelerator.</summary>
    public const string Cpu = "cpu";

    /// <summary>The accelerators of a metadata value, normalised, without duplicates, in <see cref="Compare"/> order.</summary>
    public static IReadOnlyList<string> Parse(string value)
    {
        if (string.Equals(value.Trim(), None, StringComparison.OrdinalIgnoreCase)) return [];
        var names = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (names.Length == 0)
            throw new ArgumentException($"'{value}' names no accelerator: give devices such as 'cuda:0,cuda:1' or 'cpu', or '{None}'");
        if (names.Any(n => string.Equals(n, None, StringComparison.OrdinalIgnoreCase)))
            throw new ArgumentException($"'{value}' mixes '{None}' with devices");
        var parsed = names.Select(Normalize).Distinct(StringComparer.Ordinal).ToList();
        parsed.Sort(Compare);
        return parsed;
    }

    public static string Format(IReadOnlyList<string> accelerators) => accelerators.Count == 0 ? None : string.Join(',', accelerators);

    /// <summary>"type" or "type:index" in lower case, where type is a torch device type; throws for anything else.</summary>
    public static string Normalize(string name)
    {
        var (type, index) = Split(name);
        return index < 0 ? type : $"{type}:{index.ToString(CultureInfo.InvariantCulture)}";
    }

    /// <summary>By device type, then by index as a number (so cuda:2 comes before cuda:10); a bare type first.</summary>
    public static int Compare(string a, string b)
    {
        var (typeA, indexA) = Split(a);
        var (typeB, indexB) = Split(b);
        int byType = string.CompareOrdinal(typeA, typeB);
        return byType != 0 ? byType : indexA.CompareTo(indexB);
    }

    private static (string Type, int Index) Split(string name)
    {
        var parts = name.Trim().Split(':');
        int index = -1;
        if (parts.Length > 2 || !Enum.TryParse<DeviceType>(parts[0], ignoreCase: true, out var type) || !Enum.IsDefined(type)
            || parts[0].Any(c => !char.IsAsciiLetter(c))
            || (parts.Length == 2 && (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out index))))
            throw new ArgumentException($"'{name}' is not a torch device such as 'cuda:0' or 'cpu'");
        return (type.ToString().ToLowerInvariant(), index);
    }
}
