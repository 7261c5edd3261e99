using System.Net;
using System.Text;
using System.Text.Json;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// A completion's session outlives the request: read back by the completion's id, resumed to a longer generation
/// (whole or streamed) equal to the in-process engine's, and deleted. Another user's access is in <see cref="IsolationTests"/>.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class SessionsApiTests(ServerFixture server)
{
    private const string Prompt = "Lily and Ben went to the park";

    internal static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>A completion of <paramref name="tokens"/> tokens; returns its id and text.</summary>
    internal static async Task<(string Id, string Text)> Complete(HttpClient client, string prompt, int tokens)
    {
        var body = await PluginCompletionTests.Send(client, "/v1/completions", JsonSerializer.Serialize(new { prompt, max_tokens = tokens }), HttpStatusCode.OK);
        return (body.GetProperty("id").GetString()!, body.GetProperty("choices")[0].GetProperty("text").GetString()!);
    }

    internal static async Task<JsonElement> Read(HttpClient client, string id, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await client.GetAsync($"/v1/sessions/{id}");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"expected {(int)expected}, got {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>The text of a streamed resume: its chunks' pieces, checked to end with [DONE].</summary>
    internal static async Task<string> ResumeStreamed(HttpClient client, string id, string json) =>
        string.Concat((await Chunks(client, $"/v1/sessions/{id}/resume", json)).Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));

    /// <summary>The chunks of a streamed answer to a POST of <paramref name="json"/>, checked to end with [DONE].</summary>
    private static async Task<List<JsonElement>> Chunks(HttpClient client, string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(json) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = new List<string>();
        await foreach (var data in ServerSentEvents.ReadAsync(await response.Content.ReadAsStreamAsync())) events.Add(data);
        Assert.Equal("[DONE]", events[^1]);
        return [.. events[..^1].Select(e => JsonDocument.Parse(e).RootElement.Clone())];
    }

    [Fact]
    public async Task ACompletionsSessionIsReadBackResumedAndDeleted()
    {
        using var client = server.Client();
        var (id, text) = await Complete(client, Prompt, 12);
        var first = Reference.Generate(Prompt, 12);
        Assert.Equal(first.Text, text);

        var stored = await Read(client, id);
        Assert.Equal(id, stored.GetProperty("id").GetString());
        Assert.Equal("length", stored.GetProperty("status").GetString());
        Assert.Equal(12, stored.GetProperty("generated_tokens").GetInt32());
        Assert.Equal(first.Tokens, stored.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()));
        Assert.Equal(text, stored.GetProperty("text").GetString());

        // From the start, 18 more: the whole 30-token generation; then 10 more streamed from token 30.
        var longer = Reference.Generate(Prompt, 30);
        var resumed = await PluginCompletionTests.Send(client, $"/v1/sessions/{id}/resume", """{"max_tokens": 18}""", HttpStatusCode.OK);
        Assert.Equal(id, resumed.GetProperty("id").GetString());
        Assert.Equal(longer.Text, resumed.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(30, resumed.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var longest = Reference.Generate(Prompt, 40);
        Assert.Equal(longest.Text, longer.Text + await ResumeStreamed(client, id, """{"from": 30, "max_tokens": 10, "stream": true}"""));
        Assert.Equal(longest.Tokens, (await Read(client, id)).GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()));

        await PluginCompletionTests.Send(client, $"/v1/sessions/{id}/resume", """{"from": 41}""", HttpStatusCode.BadRequest);
        using (var deleted = await client.DeleteAsync($"/v1/sessions/{id}")) Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        await Read(client, id, HttpStatusCode.NotFound);
        await Read(client, "cmpl-never-issued", HttpStatusCode.NotFound);
        await Read(client, "not-a-completion-id", HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task AResumedSessionIsCutAtTheOriginalRequestsStopStrings()
    {
        using var client = server.Client();
        var whole = Reference.Generate(Prompt, 30).Text;
        var stop = whole.Substring(whole.IndexOf(' ', whole.Length / 2), 4); // a word's start, well inside the text
        var expected = Reference.Generate(Prompt, 30, stop: [stop]).Text;
        Assert.True(expected.Length < whole.Length, $"'{stop}' does not cut '{whole}'");

        var body = await PluginCompletionTests.Send(client, "/v1/completions", JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 30, stop }), HttpStatusCode.OK);
        Assert.Equal(expected, PluginCompletionTests.Text(body));
        var id = body.GetProperty("id").GetString()!;
        Assert.Equal(expected, (await Read(client, id)).GetProperty("text").GetString());
        var resumed = await PluginCompletionTests.Send(client, $"/v1/sessions/{id}/resume", "{}", HttpStatusCode.OK);
        Assert.Equal(expected, PluginCompletionTests.Text(resumed));
        Assert.Equal("stop", resumed.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(expected, await ResumeStreamed(client, id, """{"stream": true}"""));
    }

    [Fact]
    public async Task AResumedStreamSaysWhichTokensTheDeviceMade()
    {
        using var client = server.Client();
        var device = await PluginCompletionTests.SimulatedDevice(client, "resume", RandomPlugin.Ladder);
        var request = JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 16, stream = true, spa = new { mode = "spa", device_id = device, tau = 0.5 } });
        var first = await Chunks(client, "/v1/completions", request);
        var id = first[0].GetProperty("id").GetString()!;
        var resumed = await Chunks(client, $"/v1/sessions/{id}/resume", """{"stream": true}""");

        // A token's chunk says where it was made; the closing chunk (finish reason, counters) says nothing of the kind.
        static string Origins(List<JsonElement> chunks) => string.Join(" ", chunks.Select(c =>
            c.GetProperty("choices")[0].GetProperty("text").GetString() + (c.TryGetProperty("spa", out var spa) && spa.ValueKind == JsonValueKind.Object
                && spa.TryGetProperty("edge", out var edge) ? edge.GetBoolean() ? "[edge]" : "[cloud]" : "")));
        Assert.Contains("[edge]", Origins(first));
        Assert.Equal(Origins(first), Origins(resumed));
    }
}
