using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Spa.Grains;
using Spa.Grains.Sessions;
using Spa.Testing;
using Xunit.Abstractions;

namespace Spa.Silo.Tests;

/// <summary>
/// What a hostile client controls is bounded and refused cheaply with a 400 that names the field: stop strings, prompt
/// bytes, device ids and secrets; a session's budget stays within the context and concurrent resumes each raise it; a
/// session deleted while it streams ends its stream as cancelled, not as finished.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ClientLimitsTests(ServerFixture server, ITestOutputHelper output)
{
    private const string Prompt = "Once upon a time";

    [Fact]
    public async Task StopStringsAreBoundedInCountAndLength()
    {
        using var client = server.Client();
        var longest = new string('x', CompletionRequest.MaxStopLength);
        foreach (var stop in new object[] { new[] { "a", "b", "c", "d", "e" }, longest + "x", new[] { "ok", "" } })
            Assert.Equal("stop", await Refused(client, JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 2, stop })));
        await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 2, stop = new[] { longest, longest, longest, longest } }), HttpStatusCode.OK);
    }

    [Fact]
    public async Task APromptLongerThanTheContextCanHoldIsRefusedByItsBytesBeforeTokenizing()
    {
        using var client = server.Client();
        var served = server.App.Services.GetRequiredService<ServedModel>();
        output.WriteLine($"longest token: {served.MaxPieceBytes} bytes; longest prompt: {served.MaxPromptBytes} bytes");
        var body = await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = new string('a', (int)served.MaxPromptBytes + 1), max_tokens = 2 }), HttpStatusCode.BadRequest);
        var error = body.GetProperty("error");
        Assert.Equal("prompt", error.GetProperty("param").GetString());
        Assert.Contains($"{served.MaxPromptBytes + 1} bytes", error.GetProperty("message").GetString());

        // Within the bytes but over the context's tokens: refused by its token count.
        var dense = new StringBuilder();
        while (served.Tokenizer.Encode(dense.ToString(), bos: true, eos: false).Count <= served.ContextLength) dense.Append("a 1 ");
        Assert.True(Encoding.UTF8.GetByteCount(dense.ToString()) <= served.MaxPromptBytes);
        var tokens = (await PluginCompletionTests.Send(client, "/v1/completions", JsonSerializer.Serialize(new { prompt = dense.ToString(), max_tokens = 2 }),
            HttpStatusCode.BadRequest)).GetProperty("error");
        Assert.Equal("prompt", tokens.GetProperty("param").GetString());
        Assert.Contains("tokens but the model's context holds", tokens.GetProperty("message").GetString());
    }

    [Fact]
    public async Task DeviceIdsWithATrailingNewlineOrOtherCharactersAreRefusedEverywhere()
    {
        using var client = server.Client();
        foreach (var id in new[] { "phone-a\n", "phone a", "phone-a\r\nuser bob registered", "", new string('a', 65) })
        {
            Assert.Equal("device_id", await Refused(client, JsonSerializer.Serialize(new { device_id = id }), "/v1/devices"));
            if (id.Length > 0)
                Assert.Equal("spa.device_id", await Refused(client, JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 2, spa = new { mode = "parallel", device_id = id } })));
        }
        using var lookup = await client.GetAsync("/v1/devices/phone-a%0A");
        Assert.Equal(HttpStatusCode.NotFound, lookup.StatusCode);
    }

    [Fact]
    public async Task SecretsWithoutRealEntropyAreRefused()
    {
        using var client = server.Client();
        string[] weak = [new string(' ', 16), new string('\0', 16), string.Concat(Enumerable.Repeat("\U0001F600", 8)), "aaaaaaaabbbbbbbb",
            "abababababababababababab", new string('k', 257)];
        foreach (var secret in weak)
            Assert.Equal("secret", await Refused(client, JsonSerializer.Serialize(new { device_id = "weak-" + Guid.NewGuid().ToString("N")[..8], secret }), "/v1/devices"));
        var strong = await PluginCompletionTests.Send(client, "/v1/devices",
            JsonSerializer.Serialize(new { device_id = "strong-" + Guid.NewGuid().ToString("N")[..8], secret = "x7Gq-2mVw9Lr_4Tz" }), HttpStatusCode.Created);
        Assert.Equal("offline", strong.GetProperty("state").GetString());
    }

    [Fact]
    public async Task ASessionDeletedWhileItStreamsEndsCancelledWithAnErrorAndUsageAgrees()
    {
        using var client = server.Client();
        // A device on a slow link makes every token take tens of milliseconds, so the deletion lands mid-stream.
        var device = await PluginCompletionTests.SimulatedDevice(client, "deleted", RandomPlugin.Ladder, "phone-4g");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = PluginCompletionTests.Json(JsonSerializer.Serialize(new
            {
                prompt = Prompt, max_tokens = 400, stream = true, stream_options = new { include_usage = true }, spa = new { mode = "parallel", device_id = device },
            })),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = new List<string>();
        await foreach (var data in ServerSentEvents.ReadAsync(await response.Content.ReadAsStreamAsync()))
        {
            events.Add(data);
            if (events.Count == 2)
            {
                var id = JsonDocument.Parse(data).RootElement.GetProperty("id").GetString()!;
                using var deleted = await client.DeleteAsync($"/v1/sessions/{id}");
                Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
            }
        }

        Assert.DoesNotContain("[DONE]", events);
        var error = JsonDocument.Parse(events[^1]).RootElement.GetProperty("error");
        Assert.Equal("session_deleted", error.GetProperty("code").GetString());
        // The finish with its own reason, the usage chunk asked for (no choices), then the error.
        var last = JsonDocument.Parse(events[^3]).RootElement;
        Assert.Equal("cancelled", last.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        var usage = JsonDocument.Parse(events[^2]).RootElement;
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        int completionTokens = usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.InRange(completionTokens, 1, 399);
        Assert.Equal(completionTokens, last.GetProperty("spa").GetProperty("generated_tokens").GetInt32());
        Assert.Equal(events.Count - 3, events.Take(events.Count - 3).Count(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind == JsonValueKind.Null));
    }

    [Fact]
    public async Task ConcurrentResumesEachRaiseTheBudgetAndNoBudgetPassesTheContext()
    {
        using var client = server.Client();
        var (id, _) = await SessionsApiTests.Complete(client, Prompt, 5);
        var resumes = Enumerable.Range(0, 8).Select(_ => PluginCompletionTests.Send(client, $"/v1/sessions/{id}/resume",
            JsonSerializer.Serialize(new { max_tokens = 50 }), HttpStatusCode.OK));
        await Task.WhenAll(resumes);
        Assert.Equal(5 + 8 * 50, (await SessionsApiTests.Read(client, id)).GetProperty("max_tokens").GetInt32());

        var served = server.App.Services.GetRequiredService<ServedModel>();
        for (int i = 0; i < 3; i++)
            await PluginCompletionTests.Send(client, $"/v1/sessions/{id}/resume", JsonSerializer.Serialize(new { max_tokens = served.ContextLength }), HttpStatusCode.OK);
        var session = await SessionsApiTests.Read(client, id);
        int most = served.ContextLength + 1 - session.GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(most, session.GetProperty("max_tokens").GetInt32());
    }

    [Fact]
    public async Task TheLargestStateOneRequestLeavesIsBounded()
    {
        using var client = server.Client();
        var served = server.App.Services.GetRequiredService<ServedModel>();
        // A prompt of most of the context, a budget to fill the rest, the longest stop strings of characters JSON escapes,
        // and a logit bias of as many tokens as allowed, each with the longest number in its range (tiny, so that greedy
        // decoding is unchanged).
        var prompt = new StringBuilder();
        while (served.Tokenizer.Encode(prompt.ToString(), bos: true, eos: false).Count < served.ContextLength - 40) prompt.Append("The cat sat on the mat and looked at the sun. ");
        var stop = new string('\u0001', CompletionRequest.MaxStopLength);
        var bias = Enumerable.Range(served.Tokenizer.VocabSize - CompletionRequest.MaxLogitBias, CompletionRequest.MaxLogitBias).ToDictionary(t => t.ToString(), _ => -1.2345678901234567E-05);
        var body = await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = prompt.ToString(), max_tokens = served.ContextLength, stop = new[] { stop, stop, stop, stop }, logit_bias = bias }), HttpStatusCode.OK);
        var id = body.GetProperty("id").GetString()!;

        var storage = server.App.Services.GetRequiredKeyedService<IGrainStorage>(SpaGrainsHosting.SessionStorage);
        var stored = new GrainState<SessionState>();
        var grainId = GrainId.Create("decodingsession", id[CompletionsEndpoint.IdPrefix.Length..]);
        await Eventually.True(async () =>
        {
            await storage.ReadStateAsync("session", grainId, stored);
            return stored.RecordExists && stored.State is { ExpiresAt: not null }; // released: its final state is written
        }, TimeSpan.FromSeconds(10), "the completion's session to be stored as released");
        var state = stored.State!;
        int bytes = server.App.Services.GetRequiredKeyedService<IGrainStorageSerializer>(SpaGrainsHosting.SessionStorage).Serialize(state).ToArray().Length;
        output.WriteLine($"stored session: {bytes} bytes for {state.History.Count} tokens, 4 stop strings of {CompletionRequest.MaxStopLength} characters and a logit bias of {state.Request!.Sampling.LogitBias!.Count} tokens");
        Assert.True(state.History.Count > served.ContextLength - 40);
        Assert.InRange(bytes, 1, LargestStoredSessionBytes);
    }

    /// <summary>The bound the README states for one request's stored session (stories260K, a 512-token context).</summary>
    private const int LargestStoredSessionBytes = 24 * 1024;

    private static async Task<string?> Refused(HttpClient client, string json, string path = "/v1/completions") =>
        (await PluginCompletionTests.Send(client, path, json, HttpStatusCode.BadRequest)).GetProperty("error").GetProperty("param").GetString();
}
