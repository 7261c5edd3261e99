using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Spa.Grains;
using Spa.Grains.Abstractions;
using StopStrings = Spa.Model.Generation.StopStrings;

namespace Spa.Silo;

/// <summary>
/// <c>POST /v1/completions</c>: tokenizes the prompt, runs a new decoding session grain, turns its tokens into text
/// (a streaming decoder, so characters spread over byte tokens come out whole), cuts at stop strings, and answers in
/// one JSON body or as Server-Sent Events. Both ways consume the grain's token stream, so that a stop string ends the
/// generation at once and a client that goes away cancels it. When the session's silo dies, the stream is resumed on a
/// survivor (<see cref="SiloLoss.Generate"/>) without losing or repeating a token. The session is released afterwards:
/// its KV caches are freed, and its history stays for the retention period, so that the client can read it back or
/// resume it through <see cref="SessionsEndpoint"/> with the completion's id.
/// </summary>
internal sealed class CompletionsEndpoint(ServedModel served, IGrainFactory grains, Admission admission, HostMetrics metrics,
    IOptions<SpaSessionOptions> sessions, ILogger<CompletionsEndpoint> logger)
{
    /// <summary>A completion's id: this prefix and its session's key.</summary>
    public const string IdPrefix = "cmpl-";

    /// <summary>The finish reason of a completion whose session was deleted while it ran.</summary>
    public const string Cancelled = "cancelled";

    public async Task Handle(HttpContext context)
    {
        var aborted = context.RequestAborted;
        CompletionRequest request;
        IReadOnlyList<int> promptTokens;
        try
        {
            using (var body = await RequestBody.ReadJsonAsync(context))
            {
                try
                {
                    request = CompletionRequest.Parse(body.RootElement, served);
                }
                catch (InvalidOperationException e)
                {
                    throw RequestBody.Unreadable(e);
                }
            }
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

        // The KV cache this generation fills at most: its prompt and token budget, within the context.
        using var admitted = await Admit(context, promptTokens.Count + (long)request.MaxTokens);
        if (admitted is null) return;

        var sessionId = Guid.NewGuid().ToString("N");
        using var trace = SpaTracing.StartCompletion(sessionId, request.Plugin.Mode, request.MaxTokens, request.Stream);
        var completion = new Completion(IdPrefix + sessionId, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), request.Model, [.. promptTokens], [.. promptTokens]);
        var session = grains.GetGrain<IDecodingSessionGrain>(sessionId);
        var generation = new GenerationRequest([.. promptTokens], request.MaxTokens)
        {
            Shards = served.Shards,
            Model = served.Name,
            Sampling = request.Sampling,
            Plugin = request.Plugin,
            User = (string)context.Items[SiloHost.UserItem]!,
            Stop = [.. request.Stop],
        };
        var tokens = SiloLoss.Generate(session, generation, sessions.Value.Retry, e => SessionMoved(completion.Id, e), aborted);
        await Respond(context, session, tokens, request.Stream, request.Stop, completion, request.Plugin.Mode, trace);
    }

    /// <summary>
    /// Goes on with a stored session (<c>POST /v1/sessions/{id}/resume</c>): its tokens from <paramref name="from"/>,
    /// stored first, then new ones up to a budget of <paramref name="maxGenerated"/> tokens, as a completion of that id.
    /// </summary>
    public async Task Resume(HttpContext context, string id, IDecodingSessionGrain session, SessionSnapshot stored, int from, int maxGenerated, bool stream)
    {
        using var admitted = await Admit(context, stored.PromptLength + (long)Math.Max(maxGenerated, from));
        if (admitted is null) return;
        using var trace = SpaTracing.StartCompletion(id, stored.Status.Mode, maxGenerated, stream);
        var completion = new Completion(id, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), served.Name, stored.History[..stored.PromptLength],
            stored.History[..(stored.PromptLength + from)]);
        var tokens = SiloLoss.Resume(session, from, maxGenerated, sessions.Value.Retry, e => SessionMoved(id, e), context.RequestAborted);
        await Respond(context, session, tokens, stream, stored.Stop, completion, stored.Status.Mode, trace);
    }

    /// <summary>
    /// A place among the generations running or queued, for one that fills at most <paramref name="tokens"/> positions of
    /// KV cache, or null after answering 429.
    /// </summary>
    private async Task<IDisposable?> Admit(HttpContext context, long tokens)
    {
        long kvBytes = served.KvBytesPerToken * Math.Min(tokens, served.ContextLength);
        var (admitted, overload) = await admission.EnterAsync(kvBytes, context.RequestAborted);
        if (overload is null) return admitted;
        await new ApiError(StatusCodes.Status429TooManyRequests,
            $"{admission.Describe(overload)}: retry after {admission.RetryAfterSeconds} s", code: "over_capacity",
            type: "server_error") { RetryAfterSeconds = admission.RetryAfterSeconds }.WriteAsync(context.Response);
        return null;
    }

    private void SessionMoved(string id, Exception e) =>
        logger.LogWarning("completion {Id}: the session's silo is lost ({Reason}); resuming it on another silo", id, e.Message);

    private async Task Respond(HttpContext context, IDecodingSessionGrain session, IAsyncEnumerable<TokenEvent> stream, bool streamed,
        IReadOnlyList<string> stop, Completion completion, SessionMode mode, Activity? trace)
    {
        var aborted = context.RequestAborted;
        var clock = Stopwatch.StartNew();
        await using var tokens = stream.GetAsyncEnumerator(aborted);
        try
        {
            // The first token, or the request's refusal (bad device, wrong owner, ...), comes before any response is sent.
            bool any;
            try
            {
                any = await tokens.MoveNextAsync();
                if (any) metrics.TimeToFirstToken(clock.Elapsed);
            }
            catch (Exception e) when (Refusal(e) is { } refusal)
            {
                await refusal.WriteAsync(context.Response);
                return;
            }
            if (streamed) await Stream(context, session, tokens, any, stop, completion, aborted);
            else await Whole(context, session, tokens, any, stop, completion, aborted);
            SpaTracing.CompletionDone(trace, completion.CompletionTokens, completion.FinishReason);
            logger.LogInformation("completion {Id}: {Tokens} tokens in mode {Mode} in {Ms:F0} ms", completion.Id, completion.CompletionTokens, WireNames.Of(mode), clock.Elapsed.TotalMilliseconds);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            logger.LogInformation("completion {Id} cancelled: the client went away", completion.Id);
        }
        finally
        {
            try
            {
                await SiloLoss.RetryAsync(() => session.Release().AsTask(), $"releasing session {completion.Id}", sessions.Value.Retry);
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "could not release session {Session}", completion.Id);
            }
        }
    }

    /// <summary>The answer to a generation that cannot go on because of what the request asked for; null for a server fault.</summary>
    private static ApiError? Refusal(Exception e) => e switch
    {
        DeviceNotFoundException => ApiError.DeviceNotFound(e.Message, "spa.device_id"),
        DeviceAccessDeniedException => ApiError.DeviceForbidden(e.Message, "spa.device_id"),
        EdgeUnavailableException => new ApiError(StatusCodes.Status503ServiceUnavailable, e.Message, "spa.device_id", "device_unavailable", "server_error"),
        InvalidSettingException setting => ApiError.BadRequest(e.Message, setting.Setting),
        SessionEndedException => new ApiError(StatusCodes.Status409Conflict, e.Message, code: "session_deleted"),
        SiloLossException => ApiError.ClusterUnavailable(e),
        ArgumentException => ApiError.BadRequest(e.Message),
        _ => null,
    };

    private static ApiError Failure(Exception e) => Refusal(e) ?? new ApiError(500, $"generation failed: {e.Message}", type: "server_error");

    private async Task Whole(HttpContext context, IDecodingSessionGrain session, IAsyncEnumerator<TokenEvent> tokens, bool any,
        IReadOnlyList<string> stop, Completion completion, CancellationToken aborted)
    {
        var text = new StringBuilder();
        try
        {
            await Run(tokens, any, stop, completion, (piece, _) => { text.Append(piece); return Task.CompletedTask; });
            completion.Status = await session.GetStatus();
        }
        catch (SessionEndedException)
        {
            completion.FinishReason = Cancelled;
        }
        catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
        {
            logger.LogError(e, "completion {Id} failed", completion.Id);
            await Failure(e).WriteAsync(context.Response);
            return;
        }
        await context.Response.WriteAsJsonAsync(completion.Body(text.ToString(), completion.FinishReason, final: true), aborted);
    }

    private async Task Stream(HttpContext context, IDecodingSessionGrain session, IAsyncEnumerator<TokenEvent> tokens, bool any,
        IReadOnlyList<string> stop, Completion completion, CancellationToken aborted)
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
            await Run(tokens, any, stop, completion, (piece, token) => Send(completion.Chunk(piece, token)));
            completion.Status = await session.GetStatus();
        }
        catch (SessionEndedException e)
        {
            // Deleted while it streamed: a finish reason of its own, then the error for a client that is still reading.
            completion.FinishReason = Cancelled;
            await Send(completion.Body("", completion.FinishReason, final: true));
            await Send(Failure(e).Body);
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
        {
            // The status line is gone already: report the failure as an event and end the stream without [DONE].
            logger.LogError(e, "streamed completion {Id} failed", completion.Id);
            await Send(Failure(e).Body);
            return;
        }
        await Send(completion.Body("", completion.FinishReason, final: true));
        await response.WriteAsync("data: [DONE]\n\n", aborted);
        await response.Body.FlushAsync(aborted);
    }

    /// <summary>
    /// Consumes the session's tokens (the first already fetched), handing each piece of final text and the token that
    /// completed it to <paramref name="onText"/>.
    /// </summary>
    private async Task Run(IAsyncEnumerator<TokenEvent> tokens, bool any, IReadOnlyList<string> stop, Completion completion,
        Func<string, TokenEvent?, Task> onText)
    {
        var decoder = served.Tokenizer.CreateStreamDecoder();
        foreach (var id in completion.Context) decoder.Push(id); // the first piece decodes in the context of the tokens before it
        var stops = new StopStrings(stop);
        string? finish = null;
        for (bool more = any; more; more = await tokens.MoveNextAsync())
        {
            var token = tokens.Current;
            completion.ReceivedTokens++;
            // End of sequence (EOS, or BOS which llama2.c models emit between stories) is not part of the text.
            if (token.Token == served.Description.EosId || token.Token == served.Description.BosId) { finish = "stop"; break; }
            completion.CompletionTokens++;
            var piece = stops.Push(decoder.Push(token.Token));
            if (piece.Length > 0) await onText(piece, token);
            if (stops.Stopped) { finish = "stop"; break; }
        }
        if (!stops.Stopped)
        {
            var rest = stops.Push(decoder.Flush());
            rest += stops.Flush();
            if (rest.Length > 0) await onText(rest, null);
        }
        // "length": the token budget is spent, or the model's context is full.
        completion.FinishReason = finish ?? "length";
    }

    /// <summary>
    /// One completion's identity and counters, and its JSON bodies (whole, or one stream chunk). <paramref name="context"/>:
    /// the tokens before its first (the prompt, and for a resumed session the generated tokens the client has).
    /// </summary>
    private sealed class Completion(string id, long created, string model, int[] promptTokens, int[] context)
    {
        public string Id => id;
        public int[] Context => context;
        public int CompletionTokens { get; set; }

        /// <summary>Tokens the session sent, the end of sequence included.</summary>
        public int ReceivedTokens { get; set; }

        public string FinishReason { get; set; } = "length";

        /// <summary>The session's counters at the end; null when the session was deleted before it ended.</summary>
        public GenerationResult? Status { get; set; }

        private object[] Choices(string text, string? finishReason) =>
            [new { text, index = 0, logprobs = (object?)null, finish_reason = finishReason }];

        /// <summary>One streamed piece of text; <c>spa.edge</c> says whether the device took part in the token that completed it.</summary>
        public object Chunk(string text, TokenEvent? token) => new
        {
            id,
            @object = "text_completion",
            created,
            model,
            choices = Choices(text, null),
            spa = token is { } t ? new { edge = t.Edge, degraded = t.Degraded } : null,
        };

        public object Body(string text, string? finishReason, bool final)
        {
            var usage = new { prompt_tokens = promptTokens.Length, completion_tokens = CompletionTokens, total_tokens = promptTokens.Length + CompletionTokens };
            if (Status is not { } s) // the session is gone with its counters: what this completion received is all there is
                return new { id, @object = "text_completion", created, model, choices = Choices(text, finishReason), usage, spa = new { generated_tokens = ReceivedTokens } };
            double perToken(double ms) => s.GeneratedTokens == 0 ? 0 : Math.Round(ms / s.GeneratedTokens, 4);
            return new
            {
                id,
                @object = "text_completion",
                created,
                model,
                choices = Choices(text, finishReason),
                usage,
                spa = new
                {
                    mode = WireNames.Of(s.Mode),
                    generated_tokens = s.GeneratedTokens,
                    transmissions = s.Edge.Transmissions,
                    failed_transmissions = s.Edge.FailedTransmissions,
                    m = Math.Round(s.M, 6),
                    edge_tokens = s.Edge.EdgeTokens,
                    bytes_up = s.Edge.BytesUp,
                    bytes_down = s.Edge.BytesDown,
                    degraded = s.Degraded,
                    fallbacks = s.Edge.Fallbacks,
                    // Means per generated token.
                    latency_ms = new { cloud = perToken(s.CloudMs), edge = perToken(s.Edge.EdgeMs), network = perToken(s.Edge.NetworkMs), total = perToken(s.TotalMs) },
                },
            };
        }
    }
}
