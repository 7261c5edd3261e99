using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Spa.Grains;
using Spa.Model.Generation;

namespace Spa.Silo;

/// <summary>
/// <c>POST /v1/completions</c>: tokenizes the prompt, runs a new decoding session grain, turns its tokens into text
/// (a streaming decoder, so characters spread over byte tokens come out whole), cuts at stop strings, and answers in
/// one JSON body or as Server-Sent Events. Both ways consume the grain's token stream, so that a stop string ends the
/// generation at once and a client that goes away cancels it; the session is ended afterwards, freeing its KV caches.
/// </summary>
internal sealed class CompletionsEndpoint(ServedModel served, IGrainFactory grains, ILogger<CompletionsEndpoint> logger)
{
    public async Task Handle(HttpContext context)
    {
        var aborted = context.RequestAborted;
        CompletionRequest request;
        IReadOnlyList<int> promptTokens;
        try
        {
            JsonDocument body;
            try
            {
                body = await JsonDocument.ParseAsync(context.Request.Body, default, aborted);
            }
            catch (JsonException e)
            {
                throw ApiError.BadRequest($"the request body is not valid JSON: {e.Message}");
            }
            using (body) request = CompletionRequest.Parse(body.RootElement, served);
            promptTokens = served.Tokenizer.Encode(request.Prompt, bos: true, eos: false);
            if (promptTokens.Count >= served.ContextLength)
                throw ApiError.BadRequest(
                    $"the prompt has {promptTokens.Count} tokens but the model's context holds {served.ContextLength}, leaving no room to generate", "prompt");
        }
        catch (ApiError error)
        {
            await error.WriteAsync(context.Response);
            return;
        }

        var sessionId = Guid.NewGuid().ToString("N");
        var completion = new Completion("cmpl-" + sessionId, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), request.Model, promptTokens.Count);
        var session = grains.GetGrain<IDecodingSessionGrain>(sessionId);
        var sampling = request.Sampling;
        var generation = new GenerationRequest([.. promptTokens], request.MaxTokens, served.Shards, served.Name,
            sampling.Temperature, sampling.TopP, sampling.TopK, unchecked((long)sampling.Seed), sampling.RepetitionPenalty);
        try
        {
            if (request.Stream) await Stream(context, session, generation, request, completion, aborted);
            else await Whole(context, session, generation, request, completion, aborted);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            logger.LogInformation("completion {Id} cancelled: the client went away", completion.Id);
        }
        finally
        {
            try
            {
                await session.End();
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "could not end session {Session}", sessionId);
            }
        }
    }

    private async Task Whole(HttpContext context, IDecodingSessionGrain session, GenerationRequest generation, CompletionRequest request,
        Completion completion, CancellationToken aborted)
    {
        var text = new StringBuilder();
        try
        {
            await Run(session, generation, request, completion, piece => { text.Append(piece); return Task.CompletedTask; }, aborted);
        }
        catch (ArgumentException e)
        {
            await ApiError.BadRequest(e.Message).WriteAsync(context.Response);
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
        {
            logger.LogError(e, "completion {Id} failed", completion.Id);
            await new ApiError(500, $"generation failed: {e.Message}", type: "server_error").WriteAsync(context.Response);
            return;
        }
        await context.Response.WriteAsJsonAsync(completion.Body(text.ToString(), completion.FinishReason, final: true), aborted);
    }

    private async Task Stream(HttpContext context, IDecodingSessionGrain session, GenerationRequest generation, CompletionRequest request,
        Completion completion, CancellationToken aborted)
    {
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.StartAsync(aborted);

        async Task Send(object payload)
        {
            await response.WriteAsync("data: " + JsonSerializer.Serialize(payload) + "\n\n", aborted);
            await response.Body.FlushAsync(aborted);
        }

        try
        {
            await Run(session, generation, request, completion, piece => Send(completion.Body(piece, null, final: false)), aborted);
        }
        catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
        {
            // The status line is gone already: report the failure as an event and end the stream without [DONE].
            logger.LogError(e, "streamed completion {Id} failed", completion.Id);
            var error = e is ArgumentException ? ApiError.BadRequest(e.Message) : new ApiError(500, $"generation failed: {e.Message}", type: "server_error");
            await Send(error.Body);
            return;
        }
        await Send(completion.Body("", completion.FinishReason, final: true));
        await response.WriteAsync("data: [DONE]\n\n", aborted);
        await response.Body.FlushAsync(aborted);
    }

    /// <summary>Consumes the session's tokens, handing each piece of final text to <paramref name="onText"/>.</summary>
    private async Task Run(IDecodingSessionGrain session, GenerationRequest generation, CompletionRequest request, Completion completion,
        Func<string, Task> onText, CancellationToken aborted)
    {
        var clock = Stopwatch.StartNew();
        var decoder = served.Tokenizer.CreateStreamDecoder();
        foreach (var id in generation.PromptTokens) decoder.Push(id); // the first piece decodes in the prompt's context
        var stops = new StopStrings(request.Stop);
        string? finish = null;
        await foreach (var token in session.GenerateStream(generation, aborted).WithCancellation(aborted))
        {
            int id = token.Token;
            // End of sequence (EOS, or BOS which llama2.c models emit between stories) is not part of the text.
            if (id == served.Description.EosId || id == served.Description.BosId) { finish = "stop"; break; }
            completion.CompletionTokens++;
            var piece = stops.Push(decoder.Push(id));
            if (piece.Length > 0) await onText(piece);
            if (stops.Stopped) { finish = "stop"; break; }
        }
        if (!stops.Stopped)
        {
            var rest = stops.Push(decoder.Flush());
            rest += stops.Flush();
            if (rest.Length > 0) await onText(rest);
        }
        // "length": the token budget is spent, or the model's context is full.
        completion.FinishReason = finish ?? "length";
        completion.Elapsed = clock.Elapsed;
    }

    /// <summary>One completion's identity and counters, and its JSON bodies (whole, or one stream chunk).</summary>
    private sealed class Completion(string id, long created, string model, int promptTokens)
    {
        public string Id => id;
        public int CompletionTokens { get; set; }
        public string FinishReason { get; set; } = "length";
        public TimeSpan Elapsed { get; set; }

        public object Body(string text, string? finishReason, bool final) => final
            ? new
            {
                id,
                @object = "text_completion",
                created,
                model,
                choices = new[] { new { text, index = 0, logprobs = (object?)null, finish_reason = finishReason } },
                usage = new { prompt_tokens = promptTokens, completion_tokens = CompletionTokens, total_tokens = promptTokens + CompletionTokens },
                spa = new
                {
                    mode = "base",
                    transmissions = 0,
                    m = 0.0,
                    bytes_up = 0L,
                    bytes_down = 0L,
                    degraded = false,
                    latency_ms = new { total = Math.Round(Elapsed.TotalMilliseconds, 3) },
                },
            }
            : new
            {
                id,
                @object = "text_completion",
                created,
                model,
                choices = new[] { new { text, index = 0, logprobs = (object?)null, finish_reason = finishReason } },
            };
    }
}
