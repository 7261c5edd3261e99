using System.Text.Json;

namespace Spa.Grains.Abstractions;

/// <summary>
/// The contracts' enum values as the HTTP API, metrics and traces spell them: lower case, words joined by '_'
/// ("device_unavailable").
/// </summary>
public static class WireNames
{
    public static string Of<T>(T value) where T : struct, Enum => Names<T>.ByValue[value];

    /// <summary>The value named <paramref name="name"/> exactly as <see cref="Of"/> spells it.</summary>
    public static bool TryParse<T>(string? name, out T value) where T : struct, Enum => Names<T>.ByName.TryGetValue(name ?? "", out value);

    /// <summary>Every name of <typeparamref name="T"/>, for error messages: "base, side, parallel".</summary>
    public static string List<T>() where T : struct, Enum => string.Join(", ", Names<T>.ByValue.Values);

    private static class Names<T> where T : struct, Enum
    {
        public static readonly Dictionary<T, string> ByValue = Enum.GetValues<T>().ToDictionary(v => v, v => JsonNamingPolicy.SnakeCaseLower.ConvertName(v.ToString()));
        public static readonly Dictionary<string, T> ByName = ByValue.ToDictionary(p => p.Value, p => p.Key, StringComparer.Ordinal);
    }
}
