using System.Net;
using System.Text.Json;
using Spa.Model.Sampling;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// The API as OpenAI's clients use it: prompt arrays and token prompts, echo, usage streamed only when asked, and chat
/// completions through the chat template, each equal to the in-process engine's generation of the same prompt.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class OpenAiApiTests(ServerFixture server)
{
    private const string Prompt = "Once upon a time";
    private const string Other = "The little dog";

    /// <summary>The events of a streamed answer, [DONE] included, as sent.</summary>
    private static async Task<List<string>> Events(HttpClient client, string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = PluginCompletionTests.Json(json) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = new List<string>();
        await foreach (var data in ServerSentEvents.ReadAsync(await response.Content.ReadAsStreamAsync())) events.Add(data);
        return events;
    }

    [Fact]
    public async Task AnArrayOfPromptsIsAChoiceEachWithItsOwnSession()
    {
        using var client = server.Client();
        var body = await PluginCompletionTests.Send(client, "/v1/completions", $$"""{"prompt": ["{{Prompt}}", "{{Other}}"], "max_tokens": 24}""", HttpStatusCode.OK);
        var choices = body.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1], choices.Select(c => c.GetProperty("index").GetInt32()));
        var expected = new[] { Reference.Generate(Prompt, 24), Reference.Generate(Other, 24) };
        Assert.Equal(expected.Select(e => e.Text), choices.Select(c => c.GetProperty("text").GetString()));
        Assert.Equal(expected.Sum(e => e.Tokens.Count), body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected.Sum(e => e.PromptTokens.Count), body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.All(choices, c => Assert.Equal("base", c.GetProperty("spa").GetProperty("mode").GetString()));
    }

    [Fact]
    public async Task StreamedChoicesInterleaveByIndexAndEachEndsWithItsFinish()
    {
        using var client = server.Client();
        var events = await Events(client, "/v1/completions", $$"""{"prompt": ["{{Prompt}}", "{{Other}}"], "max_tokens": 24, "stream": true}""");
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        foreach (var (prompt, index) in new[] { (Prompt, 0), (Other, 1) })
        {
            var mine = chunks.Select(c => c.GetProperty("choices")[0]).Where(c => c.GetProperty("index").GetInt32() == index).ToList();
            Assert.Equal(Reference.Generate(prompt, 24).Text, string.Concat(mine.Select(c => c.GetProperty("text").GetString())));
            Assert.Single(mine, c => c.GetProperty("finish_reason").ValueKind == JsonValueKind.String);
        }
    }

    [Fact]
    public async Task APromptOfTokenIdsGeneratesAsItsText()
    {
        using var client = server.Client();
        var ids = Reference.Encode(Prompt);
        var expected = Reference.Generate(Prompt, 20).Text;
        var one = await PluginCompletionTests.Send(client, "/v1/completions", $$"""{"prompt": [{{string.Join(",", ids)}}], "max_tokens": 20}""", HttpStatusCode.OK);
        Assert.Equal(expected, one.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(ids.Count, one.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        var two = await PluginCompletionTests.Send(client, "/v1/completions", $$"""{"prompt": [[{{string.Join(",", ids)}}], [{{string.Join(",", ids)}}]], "max_tokens": 20}""", HttpStatusCode.OK);
        Assert.Equal([expected, expected], two.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()));
    }

    [Fact]
    public async Task EchoPutsThePromptBeforeTheCompletion()
    {
        using var client = server.Client();
        var expected = Prompt + Reference.Generate(Prompt, 12).Text;
        var body = await PluginCompletionTests.Send(client, "/v1/completions", $$"""{"prompt": "{{Prompt}}", "max_tokens": 12, "echo": true}""", HttpStatusCode.OK);
        Assert.Equal(expected, body.GetProperty("choices")[0].GetProperty("text").GetString());

        var events = await Events(client, "/v1/completions", $$"""{"prompt": "{{Prompt}}", "max_tokens": 12, "echo": true, "stream": true}""");
        var texts = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()).ToList();
        Assert.Equal(Prompt, texts[0]);
        Assert.Equal(expected, string.Concat(texts));
    }

    [Fact]
    public async Task UsageIsStreamedOnlyWhenAskedInOneChunkWithoutChoicesBeforeDone()
    {
        using var client = server.Client();
        var expected = Reference.Generate(Prompt, 16);
        var events = await Events(client, "/v1/completions", $$$"""{"prompt": "{{{Prompt}}}", "max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}}""");
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        var usage = chunks[^1];
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(expected.Tokens.Count, usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected.PromptTokens.Count, usage.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.All(chunks[..^1], c => Assert.False(c.TryGetProperty("usage", out _)));
        Assert.Single(chunks.Select(c => (c.GetProperty("id").GetString(), c.GetProperty("created").GetInt64())).Distinct());
    }

    [Fact]
    public async Task AChatCompletionIsTheCompletionOfItsMessagesThroughThePlainTemplate()
    {
        using var client = server.Client();
        // stories260K is a llama2.c checkpoint: the plain template, the messages' text one per line.
        var expected = Reference.Generate("Lily had a red ball.\nOnce upon a time", 24);
        var body = await PluginCompletionTests.Send(client, "/v1/chat/completions", """
            {"model": "stories260K", "messages": [{"role": "system", "content": "Lily had a red ball."},
             {"role": "user", "content": [{"type": "text", "text": "Once upon "}, {"type": "text", "text": "a time"}]}],
             "max_completion_tokens": 24}
            """, HttpStatusCode.OK);
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal(expected.Text, choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(expected.Finish == Spa.Model.Generation.FinishReason.Stop ? "stop" : "length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(expected.Tokens.Count, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected.PromptTokens.Count, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task AStreamedChatOpensWithTheRoleAndClosesWithAnEmptyDelta()
    {
        using var client = server.Client();
        var expected = Reference.Generate(Prompt, 20).Text;
        var events = await Events(client, "/v1/chat/completions", $$"""{"messages": [{"role": "user", "content": "{{Prompt}}"}], "max_tokens": 20, "stream": true}""");
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        var deltas = chunks.Select(c => c.GetProperty("choices")[0].GetProperty("delta")).ToList();
        Assert.Equal("assistant", deltas[0].GetProperty("role").GetString());
        Assert.Equal(expected, string.Concat(deltas.Select(d => d.TryGetProperty("content", out var c) ? c.GetString() : "")));
        Assert.Empty(deltas[^1].EnumerateObject());
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Theory]
    [InlineData("""{"messages": []}""", "messages", "non-empty array")]
    [InlineData("""{"messages": [{"role": "tool", "content": "42"}]}""", "messages[0].role", "tools and functions are not supported")]
    [InlineData("""{"messages": [{"role": "user"}]}""", "messages[0].content", "content is required")]
    [InlineData("""{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}""", "messages[0].content", "only text parts")]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}], "n": 2}""", "n", "n must be 1")]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_object"}}""", "response_format", "only {\"type\": \"text\"}")]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}""", "tools", "not supported")]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 0}""", "max_completion_tokens", "at least 1")]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 3}""", "top_logprobs", "needs logprobs: true")]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "top_logprobs": 21}""", "top_logprobs", "between 0 and 20")]
    public async Task ABadChatRequestIs400NamingTheField(string json, string param, string reason)
    {
        using var client = server.Client();
        var error = (await PluginCompletionTests.Send(client, "/v1/chat/completions", json, HttpStatusCode.BadRequest)).GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains(reason, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task LogprobsAreTheModelsForEachTokenWholeAndStreamed()
    {
        using var client = server.Client();
        var expected = Reference.Generate(Prompt, 12);
        var body = await PluginCompletionTests.Send(client, "/v1/completions", $$"""{"prompt": "{{Prompt}}", "max_tokens": 12, "logprobs": 3}""", HttpStatusCode.OK);
        var logprobs = body.GetProperty("choices")[0].GetProperty("logprobs");
        var tokenLogprobs = logprobs.GetProperty("token_logprobs").EnumerateArray().Select(l => l.GetDouble()).ToList();
        Assert.Equal(expected.Tokens.Count, tokenLogprobs.Count);
        // The engine's own sum of its tokens' log-probabilities, from the same logits up to float rounding.
        Assert.Equal(expected.LogProbability, tokenLogprobs.Sum(), 3);
        var tops = logprobs.GetProperty("top_logprobs").EnumerateArray().ToList();
        var tokens = logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToList();
        for (int i = 0; i < tops.Count; i++)
        {
            var alternatives = tops[i].EnumerateObject().ToList();
            Assert.Equal(3, alternatives.Count);
            // Greedy: the chosen token is the most likely one, and the alternatives come most likely first.
            Assert.Equal((tokens[i], tokenLogprobs[i]), (alternatives[0].Name, alternatives[0].Value.GetDouble()));
            Assert.True(alternatives[0].Value.GetDouble() >= alternatives[1].Value.GetDouble() && alternatives[1].Value.GetDouble() >= alternatives[2].Value.GetDouble());
        }
        Assert.Equal(logprobs.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).Order(), logprobs.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()));

        var events = await Events(client, "/v1/completions", $$"""{"prompt": "{{Prompt}}", "max_tokens": 12, "logprobs": 3, "stream": true}""");
        var streamed = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("logprobs"))
            .Where(l => l.ValueKind == JsonValueKind.Object).SelectMany(l => l.GetProperty("token_logprobs").EnumerateArray().Select(x => x.GetDouble()));
        Assert.Equal(tokenLogprobs, streamed);

        var chat = await PluginCompletionTests.Send(client, "/v1/chat/completions",
            $$"""{"messages": [{"role": "user", "content": "{{Prompt}}"}], "max_tokens": 12, "logprobs": true, "top_logprobs": 2}""", HttpStatusCode.OK);
        var content = chat.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(tokenLogprobs, content.Select(c => c.GetProperty("logprob").GetDouble()));
        Assert.All(content, c => Assert.Equal(2, c.GetProperty("top_logprobs").GetArrayLength()));
        Assert.Equal(JsonValueKind.Null, (await PluginCompletionTests.Send(client, "/v1/completions", $$"""{"prompt": "{{Prompt}}", "max_tokens": 2}""", HttpStatusCode.OK))
            .GetProperty("choices")[0].GetProperty("logprobs").ValueKind);
    }

    [Fact]
    public async Task PenaltiesAndLogitBiasPickAsTheEngineDoesWithTheSameSettings()
    {
        using var client = server.Client();
        var penalised = Reference.Generate(Prompt, 40, new SamplingOptions { PresencePenalty = 0.7, FrequencyPenalty = 1.2 });
        Assert.NotEqual(Reference.Generate(Prompt, 40).Text, penalised.Text); // the penalties change this generation
        var body = await PluginCompletionTests.Send(client, "/v1/completions",
            $$"""{"prompt": "{{Prompt}}", "max_tokens": 40, "presence_penalty": 0.7, "frequency_penalty": 1.2}""", HttpStatusCode.OK);
        Assert.Equal(penalised.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());

        var bias = new Dictionary<int, double> { [Reference.Encode(" Lily")[^1]] = 6, [Reference.Generate(Prompt, 1).Tokens[0]] = -100 };
        var biased = Reference.Generate(Prompt, 20, new SamplingOptions { Temperature = 0.8, Seed = 11, LogitBias = bias });
        var sampled = await PluginCompletionTests.Send(client, "/v1/completions",
            $$"""{"prompt": "{{Prompt}}", "max_tokens": 20, "temperature": 0.8, "seed": 11, "logit_bias": {{JsonSerializer.Serialize(bias.ToDictionary(b => b.Key.ToString(), b => b.Value))}}}""", HttpStatusCode.OK);
        Assert.Equal(biased.Text, sampled.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task TheChatBudgetIsMaxCompletionTokensBeforeMaxTokens()
    {
        using var client = server.Client();
        var body = await PluginCompletionTests.Send(client, "/v1/chat/completions", $$"""{"messages": [{"role": "user", "content": "{{Prompt}}"}], "max_completion_tokens": 5, "max_tokens": 30}""", HttpStatusCode.OK);
        Assert.Equal(Reference.Generate(Prompt, 5).Tokens.Count, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }
}
