using Spa.Testing;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Spa.Grains.Abstractions;
using Spa.Model.Generation;
using Spa.Model.Sampling;

namespace Spa.Silo.Tests;

[Collection(ServerCollection.Name)]
public sealed class CompletionTests(ServerFixture server)
{
    private const string Prompt = "Once upon a time";

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<JsonElement> Post(HttpClient client, string json, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await client.PostAsync("/v1/completions", Json(json));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"expected {(int)expected}, got {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    [Fact]
    public async Task GreedyCompletionEqualsTheInProcessEngine()
    {
        var expected = Reference.Generate(Prompt, 40);
        using var client = server.Client();
        var body = await Post(client, $$"""{"model": "stories260K", "prompt": "{{Prompt}}", "max_tokens": 40, "some_unknown_field": [1, 2]}""");

        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", body.GetProperty("id").GetString());
        Assert.Equal("stories260K", body.GetProperty("model").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.Equal(expected.Finish == FinishReason.Stop ? "stop" : "length", choice.GetProperty("finish_reason").GetString());

        var usage = body.GetProperty("usage");
        Assert.Equal(expected.PromptTokens.Count, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(expected.Tokens.Count, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected.PromptTokens.Count + expected.Tokens.Count, usage.GetProperty("total_tokens").GetInt32());

        var spa = body.GetProperty("spa");
        Assert.Equal("base", spa.GetProperty("mode").GetString());
        Assert.Equal(0, spa.GetProperty("transmissions").GetInt32());
        Assert.Equal(0, spa.GetProperty("m").GetDouble());
        Assert.Equal(0, spa.GetProperty("bytes_up").GetInt64());
        Assert.Equal(0, spa.GetProperty("bytes_down").GetInt64());
        Assert.False(spa.GetProperty("degraded").GetBoolean());
    }

    [Fact]
    public async Task StreamedDeltasConcatenateToTheSameTextAndEndWithDone()
    {
        var expected = Reference.Generate(Prompt, 40);
        using var client = server.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Json($$"""{"prompt": "{{Prompt}}", "max_tokens": 40, "stream": true}"""),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);

        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<string>();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            events.Add(line["data: ".Length..]);
        }
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.True(chunks.Count > 2, "a delta per token, then the final chunk");
        var text = string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(expected.Text, text);
        Assert.All(chunks[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
        var last = chunks[^1];
        Assert.Equal("length", last.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(expected.Tokens.Count, last.GetProperty("spa").GetProperty("generated_tokens").GetInt32());
        Assert.All(chunks, c => Assert.False(c.TryGetProperty("usage", out _), "usage unasked"));
        Assert.Single(chunks.Select(c => (c.GetProperty("id").GetString(), c.GetProperty("created").GetInt64())).Distinct());
    }

    [Fact]
    public async Task StopStringsAndSamplingMatchTheInProcessEngine()
    {
        using var client = server.Client();
        var stopped = Reference.Generate(Prompt, 60, stop: ["Lily"]);
        var body = await Post(client, $$"""{"prompt": "{{Prompt}}", "max_tokens": 60, "stop": ["Lily"]}""");
        Assert.Equal(stopped.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("stop", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(stopped.Tokens.Count, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var sampling = new SamplingOptions { Temperature = 0.9, TopP = 0.95, Seed = 7 };
        var sampled = Reference.Generate(Prompt, 30, sampling);
        body = await Post(client, $$"""{"prompt": "{{Prompt}}", "max_tokens": 30, "temperature": 0.9, "top_p": 0.95, "seed": 7}""");
        Assert.Equal(sampled.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.NotEqual(Reference.Generate(Prompt, 30).Text, sampled.Text); // the settings did change the draw

        // Without a seed, each request draws its own.
        var unseeded = new HashSet<string>();
        for (int i = 0; i < 3; i++)
            unseeded.Add(PluginCompletionTests.Text(await Post(client, $$"""{"prompt": "{{Prompt}}", "max_tokens": 30, "temperature": 1.0}""")));
        Assert.True(unseeded.Count > 1, "three unseeded samples at temperature 1 gave the same text");
    }

    [Fact]
    public async Task AClientThatGoesAwayCancelsTheGenerationAndFreesItsCache()
    {
        var shard = server.App.Services.GetRequiredService<IGrainFactory>()
            .GetGrain<IBaseModelShardGrain>(ShardKey.Format("stories260K", 0, 1));
        long before = (await shard.GetStats()).Steps;
        using var client = server.Client();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Json($$"""{"prompt": "{{Prompt}}", "max_tokens": 500, "stream": true}"""),
        })
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
        } // the connection closes here, after the first token

        var stats = await Eventually.Until(() => shard.GetStats().AsTask(), s => s.SessionsHeld == 0, TimeSpan.FromSeconds(20),
            "the cancelled session to give its KV-cache slot back");
        await Task.Delay(500); // a step that still ran would show within this time
        Assert.Equal(stats.Steps, (await shard.GetStats()).Steps); // nothing runs any more
        // Left alone, this prompt runs 341 tokens to its end of story; cancelled, it stops far earlier.
        Assert.True(stats.Steps - before < 300, $"{stats.Steps - before} steps: the generation was not cancelled");
    }

    [Fact]
    public async Task MissingOrWrongKeyIs401()
    {
        using var anonymous = server.Client(null);
        using (var response = await anonymous.PostAsync("/v1/completions", Json("""{"prompt": "x"}""")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/models")).StatusCode);
        using var wrong = server.Client("not-a-key");
        Assert.Equal(HttpStatusCode.Unauthorized, (await wrong.PostAsync("/v1/completions", Json("""{"prompt": "x"}"""))).StatusCode);
        // A key from the configuration (Spa:Auth:Keys) works as well as the --api-key one.
        using var other = server.Client(ServerFixture.OtherKey);
        Assert.Equal(HttpStatusCode.OK, (await other.GetAsync("/v1/models")).StatusCode);
    }

    [Theory]
    [InlineData("""{"prompt": "Once upon""", "not valid JSON")]
    [InlineData("""[1, 2]""", "JSON object")]
    [InlineData("""{"max_tokens": 5}""", "prompt is required")]
    [InlineData("""{"prompt": "", "max_tokens": 5}""", "prompt must not be empty")]
    [InlineData("""{"prompt": 17}""", "prompt must be a string, an array of strings")]
    [InlineData("""{"prompt": ["Once", 17]}""", "prompt must be a string, an array of strings")]
    [InlineData("""{"prompt": [1, 600]}""", "token id 600 is not in the model's vocabulary of 512")]
    [InlineData("""{"prompt": []}""", "prompt must be a string, an array of strings")]
    [InlineData("""{"prompt": [[]]}""", "must not be empty")]
    [InlineData("""{"prompt": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}""", "at most 16 prompts")]
    [InlineData("""{"prompt": "Once", "stream_options": {"include_usage": true}}""", "only allowed when stream is true")]
    [InlineData("""{"prompt": "Once", "max_tokens": 0}""", "max_tokens must be at least 1")]
    [InlineData("""{"prompt": "Once", "max_tokens": -3}""", "max_tokens must be at least 1")]
    [InlineData("""{"prompt": "Once", "max_tokens": 100000}""", "context holds 512")]
    [InlineData("""{"prompt": "Once", "max_tokens": 1.5}""", "max_tokens must be an integer")]
    [InlineData("""{"prompt": "Once", "temperature": -1}""", "temperature")]
    [InlineData("""{"prompt": "Once", "top_p": 0}""", "top-p")]
    [InlineData("""{"prompt": "Once", "stop": 3}""", "stop must be")]
    [InlineData("""{"prompt": "Once", "n": 2}""", "n must be 1: one choice per prompt")]
    [InlineData("""{"prompt": "Once", "presence_penalty": 2.5}""", "presence_penalty must be between -2 and 2")]
    [InlineData("""{"prompt": "Once", "frequency_penalty": "high"}""", "frequency_penalty must be a number")]
    [InlineData("""{"prompt": "Once", "logit_bias": {"600": 1}}""", "'600' is not a token id")]
    [InlineData("""{"prompt": "Once", "logit_bias": {"7": 101}}""", "must be a number in [-100, 100]")]
    [InlineData("""{"prompt": "Once", "logprobs": 6}""", "logprobs must be between 0 and 5")]
    [InlineData("""{"prompt": "Once", "spa": {"mode": "spa"}}""", "spa.device_id")]
    [InlineData("""{"prompt": "Once", "spa": {"mode": "warp"}}""", "spa.mode must be one of")]
    [InlineData("""{"prompt": "Once", "spa": {"mode": "parallel", "device_id": "d", "tau": 0.5}}""", "gate of modes switch and spa")]
    [InlineData("""{"prompt": "Once", "spa": {"mode": "spa", "device_id": "d", "tau": 0.5, "m_budget": 0.2}}""", "not both")]
    [InlineData("""{"prompt": "Once", "spa": {"mode": "spa", "device_id": "d", "fallback": "pray"}}""", "spa.fallback")]
    [InlineData("""{"prompt": "Once", "spa": {"mode": "spa", "device_id": "d", "tua": 0.5}}""", "spa.tua is not a setting")]
    [InlineData("""{"prompt": "Once", "spa": "spa"}""", "spa must be an object")]
    public async Task BadRequestsAre400WithAReason(string json, string reason)
    {
        using var client = server.Client();
        var error = (await Post(client, json, HttpStatusCode.BadRequest)).GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains(reason, error.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("best_of", "3")]
    [InlineData("suffix", "\" The end.\"")]
    public async Task AnOpenAiSettingThisServerDoesNotHonourIsRefusedByName(string field, string value)
    {
        using var client = server.Client();
        var error = (await Post(client, $$"""{"prompt": "Once", "max_tokens": 2, "{{field}}": {{value}}}""", HttpStatusCode.BadRequest)).GetProperty("error");
        Assert.Equal(field, error.GetProperty("param").GetString());
        Assert.Contains("not supported", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task TheNeutralValuesClientsSendOnEveryRequestPass()
    {
        using var client = server.Client();
        var body = await Post(client, """
            {"prompt": "Once", "max_tokens": 2, "presence_penalty": 0, "frequency_penalty": 0, "logprobs": null, "echo": false,
             "best_of": 1, "logit_bias": {}, "suffix": "", "n": 1, "top_p": 1}
            """);
        Assert.Equal(Reference.Generate("Once", 2).Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task PromptOverTheContextIs400()
    {
        using var client = server.Client();
        var prompt = string.Concat(Enumerable.Repeat("the cat sat on the mat. ", 200));
        var error = (await Post(client, JsonSerializer.Serialize(new { prompt, max_tokens = 5 }), HttpStatusCode.BadRequest)).GetProperty("error");
        Assert.Contains("the model's context holds 512", error.GetProperty("message").GetString());
        Assert.Equal("prompt", error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task UnknownModelIs404()
    {
        using var client = server.Client();
        var error = (await Post(client, """{"model": "gpt-17", "prompt": "Once"}""", HttpStatusCode.NotFound)).GetProperty("error");
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Contains("gpt-17", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task HealthAndModels()
    {
        using var anonymous = server.Client(null);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/healthz")).StatusCode);

        using var client = server.Client();
        var list = await client.GetFromJsonAsync<JsonElement>("/v1/models");
        Assert.Equal("list", list.GetProperty("object").GetString());
        var model = Assert.Single(list.GetProperty("data").EnumerateArray());
        Assert.Equal("stories260K", model.GetProperty("id").GetString());
        Assert.Equal("model", model.GetProperty("object").GetString());
        Assert.Equal(512, model.GetProperty("context_length").GetInt32());
        Assert.Equal(model.ToString(), (await client.GetFromJsonAsync<JsonElement>("/v1/models/stories260K")).ToString());
        using var unknown = await client.GetAsync("/v1/models/llama-7b");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("model_not_found", (await unknown.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
        // The fixture's key was given, so no key was generated and announced.
        Assert.DoesNotContain("API key:", server.Announcements.ToString());
    }
}
