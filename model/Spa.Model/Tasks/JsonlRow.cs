using System.Text.Json;

namespace Spa.Model.Tasks;

/// <summary>
/// One JSON object of a JSON Lines file. Every complaint about it is an <see cref="InvalidDataException"/> whose
/// message starts with "FILE:LINE:" (1-based), so a user can go straight to the bad row.
/// </summary>
internal sealed class JsonlRow
{
    private readonly JsonElement _value;

    private JsonlRow(string file, int line, JsonElement value)
    {
        File = file;
        Line = line;
        _value = value;
    }

    public string File { get; }
    public int Line { get; }

    /// <summary>The objects of <paramref name="path"/>, one per line; blank lines are skipped.</summary>
    public static IEnumerable<JsonlRow> Read(string path)
    {
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"task data {path} does not exist", path);
        var line = 0;
        foreach (var text in System.IO.File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonElement value;
            try
            {
                value = JsonSerializer.Deserialize<JsonElement>(text);
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}:{line}: not valid JSON: {e.Message}", e);
            }
            if (value.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}:{line}: expected a JSON object, found {Describe(value.ValueKind)}");
            yield return new JsonlRow(path, line, value);
        }
    }

    public bool Has(string name) => _value.TryGetProperty(name, out _);

    public string GetString(string name)
    {
        var value = Get(name);
        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw WrongKind(name, value, "a string");
    }

    /// <summary>An identifier, which data sets write as a string or as an integer.</summary>
    public string GetId(string name)
    {
        var value = Get(name);
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString()!,
            JsonValueKind.Number when value.TryGetInt64(out var number) => number.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => throw WrongKind(name, value, "a string or an integer"),
        };
    }

    /// <summary>An array of two-string arrays, such as a conversation's earlier [question, answer] turns.</summary>
    public IReadOnlyList<(string First, string Second)> GetStringPairs(string name)
    {
        var value = Get(name);
        if (value.ValueKind != JsonValueKind.Array) throw WrongKind(name, value, "an array of [string, string] pairs");
        var pairs = new List<(string, string)>();
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Array || item.GetArrayLength() != 2
                || item[0].ValueKind != JsonValueKind.String || item[1].ValueKind != JsonValueKind.String)
                throw Error($"\"{name}\"[{pairs.Count}] must be a [string, string] pair");
            pairs.Add((item[0].GetString()!, item[1].GetString()!));
        }
        return pairs;
    }

    public InvalidDataException Error(string message) => new($"{File}:{Line}: {message}");

    private JsonElement Get(string name) =>
        _value.TryGetProperty(name, out var value) ? value : throw Error($"missing field \"{name}\"");

    private InvalidDataException WrongKind(string name, JsonElement value, string expected) =>
        Error($"field \"{name}\" must be {expected}, not {Describe(value.ValueKind)}");

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}
