namespace Spa.Testing;

/// <summary>The payloads of a text/event-stream response (its "data: " lines), as they arrive.</summary>
public static class ServerSentEvents
{
    public static async IAsyncEnumerable<string> ReadAsync(Stream body)
    {
        using var reader = new StreamReader(body);
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0) continue;
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) throw new InvalidDataException($"not an event line: '{line}'");
            yield return line["data: ".Length..];
        }
    }
}
