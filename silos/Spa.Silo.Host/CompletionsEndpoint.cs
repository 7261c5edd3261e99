using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Spa.Grains;
using Spa.Grains.Abstractions;
using StopStrings = Spa.Model.Generation.StopStrings;

namespace Spa.Silo;

/// <summary>
/// <c>POST /v1/completions</c> and <c>POST /v1/chat/completions</c>: tokenizes each prompt (a chat's messages through
/// the chat template), runs a new decoding session grain per prompt, all at once, turns their tokens into text (a
/// streaming decoder, so characters spread over byte tokens come out whole), cuts at stop strings, and answers in one
/// JSON body or as Server-Sent Events, shaped as OpenAI shapes each (<see cref="ResponseShape"/>). Both ways consume
/// the grains' token streams, so that a stop string ends a generation at once and a client that goes away cancels it.
/// When a session's silo dies, its stream is resumed on a survivor (<see cref="SiloLoss.Generate"/>) without losing
/// or repeating a token. The sessions are released afterwards: their KV caches are freed, and their histories stay
/// for the retention period, so that the client can read one back or resume it through <see cref="SessionsEndpoint"/>
/// with its choice's session id (the completion's id is its first choice's).
/// </summary>
internal sealed class CompletionsEndpoint(ServedModel served, ChatTemplate chatTemplate, IGrainFactory grains, Admission admission, HostMetrics metrics,
    GenAiMetrics genAi, IOptions<SpaSessionOptions> sessions, ILogger<CompletionsEndpoint> logger)
{
    /// <summary>A completion's id: this prefix and its session's key.</summary>
    public const string IdPrefix = "cmpl-";

    /// <summary>The finish reason of a completion whose session was deleted while it ran.</summary>
    public const string Cancelled = "cancelled";

    public Task Handle(HttpContext context) => Serve(context, body => CompletionRequest.Parse(body, served), ResponseShape.Text);

    public Task HandleChat(HttpContext context) => Serve(context, body => CompletionRequest.ParseChat(body, served, chatTemplate), ResponseShape.Chat);

    private async Task Serve(HttpContext context, Func<JsonElement, CompletionRequest> parse, ResponseShape shape)
    {
        var aborted = context.RequestAborted;
        var clock = Stopwatch.StartNew();
        CompletionRequest request;
        List<IReadOnlyList<int>> prompts;
        try
        {
            using (var body = await RequestBody.ReadJsonAsync(context))
            {
                try
                {
                    request = parse(body.RootElement);
                }
                catch (InvalidOperationException e)
                {
                    throw RequestBody.Unreadable(e);
                }
            }
            prompts = [.. request.Prompts.Select(p => p.Tokens ?? served.Tokenizer.Encode(p.Text!, bos: true, eos: false))];
            if (prompts.FirstOrDefault(p => p.Count >= served.ContextLength) is { } tooLong)
                throw ApiError.BadRequest(
                    $"the prompt has {tooLong.Count} tokens but the model's context holds {served.ContextLength}, leaving no room to generate", "prompt");
        }
        catch (ApiError error)
        {
            await Refuse(context, error, shape, clock);
            return;
        }

        // The KV cache these generations fill at most: each prompt and token budget, within the context.
        using var admitted = await Admit(context, prompts.Sum(p => Math.Min(p.Count + (long)request.MaxTokens, served.ContextLength)), shape, clock);
        if (admitted is null) return;

        var runs = prompts.Select((tokens, index) =>
        {
            var sessionId = Guid.NewGuid().ToString("N");
            var session = grains.GetGrain<IDecodingSessionGrain>(sessionId);
            var generation = new GenerationRequest([.. tokens], request.MaxTokens)
            {
                Shards = served.Shards,
                Model = served.Name,
                Sampling = request.Sampling,
                Plugin = request.Plugin,
                User = (string)context.Items[SiloHost.UserItem]!,
                Stop = [.. request.Stop],
            };
            var choice = new Choice(index, IdPrefix + sessionId, [.. tokens], [.. tokens])
            {
                Echo = request.Echo ? request.Prompts[index].Text ?? served.Tokenizer.Decode(tokens.Where(t => t != served.Description.BosId)) : "",
            };
            return new Run(choice, session, SiloLoss.Generate(session, generation, sessions.Value.Retry, e => SessionMoved(choice.Id, e), aborted));
        }).ToList();
        var reply = new Reply(runs[0].Choice.Id, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), served.Name, shape, request.IncludeUsage, served.Tokenizer);
        using var trace = SpaTracing.StartCompletion(runs[0].Choice.Id[IdPrefix.Length..], request.Plugin.Mode, request.MaxTokens, request.Stream,
            shape.Operation, served.Name, request.Sampling, request.Stop);
        await Respond(context, reply, runs, request.Stream, request.Stop, request.Plugin.Mode, trace, clock);
    }

    /// <summary>
    /// Goes on with a stored session (<c>POST /v1/sessions/{id}/resume</c>): its tokens from <paramref name="from"/>,
    /// stored first, then new ones up to a budget of <paramref name="maxGenerated"/> tokens, as a completion of that id.
    /// </summary>
    public async Task Resume(HttpContext context, string id, IDecodingSessionGrain session, SessionSnapshot stored, int from, int maxGenerated,
        bool stream, bool includeUsage)
    {
        var clock = Stopwatch.StartNew();
        using var admitted = await Admit(context, stored.PromptLength + (long)Math.Max(maxGenerated, from), ResponseShape.Text, clock);
        if (admitted is null) return;
        using var trace = SpaTracing.StartCompletion(id, stored.Status.Mode, maxGenerated, stream, ResponseShape.Text.Operation, served.Name, null, stored.Stop);
        var choice = new Choice(0, id, stored.History[..stored.PromptLength], stored.History[..(stored.PromptLength + from)]);
        var tokens = SiloLoss.Resume(session, from, maxGenerated, sessions.Value.Retry, e => SessionMoved(id, e), context.RequestAborted);
        var reply = new Reply(id, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), served.Name, ResponseShape.Text, includeUsage, served.Tokenizer);
        await Respond(context, reply, [new Run(choice, session, tokens)], stream, stored.Stop, stored.Status.Mode, trace, clock);
    }

    /// <summary>
    /// A place among the generations running or queued, for generations that fill at most <paramref name="tokens"/>
    /// positions of KV cache, or null after answering 429.
    /// </summary>
    private async Task<IDisposable?> Admit(HttpContext context, long tokens, ResponseShape shape, Stopwatch clock)
    {
        long kvBytes = served.KvBytesPerToken * tokens;
        var waiting = Stopwatch.StartNew();
        var (admitted, overload) = await admission.EnterAsync(kvBytes, context.RequestAborted);
        genAi.AdmissionWait(waiting.Elapsed);
        if (overload is null) return admitted;
        await Refuse(context, new ApiError(StatusCodes.Status429TooManyRequests,
            $"{admission.Describe(overload)}: retry after {admission.RetryAfterSeconds} s", code: "over_capacity",
            type: "server_error") { RetryAfterSeconds = admission.RetryAfterSeconds }, shape, clock);
        return null;
    }

    /// <summary>Answers <paramref name="error"/> and counts the failed request's duration under its code (else its status).</summary>
    private Task Refuse(HttpContext context, ApiError error, ResponseShape shape, Stopwatch clock)
    {
        genAi.Failed(shape.Operation, served.Name, clock.Elapsed, error.Code ?? error.Status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return error.WriteAsync(context.Response);
    }

    private void SessionMoved(string id, Exception e) =>
        logger.LogWarning("completion {Id}: the session's silo is lost ({Reason}); resuming it on another silo", id, e.Message);

    /// <summary>One choice's session and its token stream, opened by <see cref="Respond"/>.</summary>
    private sealed record Run(Choice Choice, IDecodingSessionGrain Session, IAsyncEnumerable<TokenEvent> Stream);

    /// <param name="clock">Started with the request, for the GenAI metrics, which count its whole time (reading, admission included).</param>
    private async Task Respond(HttpContext context, Reply reply, List<Run> runs, bool streamed, IReadOnlyList<string> stop, SessionMode mode, Activity? trace,
        Stopwatch clock)
    {
        var aborted = context.RequestAborted;
        var admitted = Stopwatch.StartNew(); // spa_time_to_first_token counts from admission
        var tokens = runs.Select(r => r.Stream.GetAsyncEnumerator(aborted)).ToList();
        try
        {
            // Every choice's first token, or the request's refusal (bad device, wrong owner, ...), comes before any response is sent.
            var firsts = await Task.WhenAll(tokens.Select(async t =>
            {
                try
                {
                    return (Any: await t.MoveNextAsync(), Refusal: (ApiError?)null);
                }
                catch (Exception e) when (Refusal(e) is { } refusal)
                {
                    return (Any: false, Refusal: refusal);
                }
            }));
            if (firsts.FirstOrDefault(f => f.Refusal is not null).Refusal is { } refused)
            {
                await Refuse(context, refused, reply.Shape, clock);
                return;
            }
            var firstToken = clock.Elapsed;
            if (firsts.Any(f => f.Any)) metrics.TimeToFirstToken(admitted.Elapsed);
            var choices = runs.Zip(tokens, firsts).Select(x => (Run: x.First, Tokens: x.Second, x.Third.Any)).ToList();
            var failure = streamed ? await Stream(context, reply, choices, stop, aborted) : await Whole(context, reply, choices, stop, aborted);
            int promptTokens = runs.Sum(r => r.Choice.PromptTokens.Length), outputTokens = runs.Sum(r => r.Choice.CompletionTokens);
            string[] finishReasons = [.. runs.Select(r => r.Choice.FinishReason)];
            if (failure is null) genAi.Succeeded(reply.Shape.Operation, reply.Model, firstToken, clock.Elapsed, promptTokens, outputTokens, finishReasons);
            else genAi.Failed(reply.Shape.Operation, reply.Model, clock.Elapsed, failure.Code ?? failure.Status.ToString(System.Globalization.CultureInfo.InvariantCulture));
            SpaTracing.CompletionDone(trace, reply.Id, reply.Model, promptTokens, outputTokens, finishReasons);
            logger.LogInformation("completion {Id}: {Choices} choice(s), {Tokens} tokens in mode {Mode} in {Ms:F0} ms",
                reply.Id, runs.Count, runs.Sum(r => r.Choice.CompletionTokens), WireNames.Of(mode), clock.Elapsed.TotalMilliseconds);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            logger.LogInformation("completion {Id} cancelled: the client went away", reply.Id);
        }
        finally
        {
            foreach (var enumerator in tokens) await enumerator.DisposeAsync();
            await Task.WhenAll(runs.Select(async run =>
            {
                try
                {
                    await SiloLoss.RetryAsync(() => run.Session.Release().AsTask(), $"releasing session {run.Choice.Id}", sessions.Value.Retry);
                }
                catch (Exception e)
                {
                    logger.LogWarning(e, "could not release session {Session}", run.Choice.Id);
                }
            }));
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

    /// <summary>Answers the choices in one body; returns the failure it answered instead, or null.</summary>
    private async Task<ApiError?> Whole(HttpContext context, Reply reply, List<(Run Run, IAsyncEnumerator<TokenEvent> Tokens, bool Any)> choices,
        IReadOnlyList<string> stop, CancellationToken aborted)
    {
        var failures = await Task.WhenAll(choices.Select(async c =>
        {
            var choice = c.Run.Choice;
            choice.Add(choice.Echo, []);
            try
            {
                await Generate(c.Tokens, c.Any, stop, choice, (piece, made) =>
                {
                    choice.Add(piece, made);
                    return Task.CompletedTask;
                });
                choice.Status = await c.Run.Session.GetStatus();
                return null;
            }
            catch (SessionEndedException)
            {
                choice.FinishReason = Cancelled;
                return null;
            }
            catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
            {
                logger.LogError(e, "completion {Id} failed", choice.Id);
                return Failure(e);
            }
        }));
        if (failures.FirstOrDefault(f => f is not null) is { } failure)
        {
            await failure.WriteAsync(context.Response);
            return failure;
        }
        await context.Response.WriteAsJsonAsync(reply.Whole([.. choices.Select(c => c.Run.Choice)]), aborted);
        return null;
    }

    /// <summary>Streams the choices as Server-Sent Events; returns the failure it sent as an error event, or null.</summary>
    private async Task<ApiError?> Stream(HttpContext context, Reply reply, List<(Run Run, IAsyncEnumerator<TokenEvent> Tokens, bool Any)> choices,
        IReadOnlyList<string> stop, CancellationToken aborted)
    {
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.StartAsync(aborted);

        // The choices stream at once, each from its own task: one writes at a time.
        using var writing = new SemaphoreSlim(1);
        async Task Send(object payload)
        {
            await writing.WaitAsync(aborted);
            try
            {
                await response.WriteAsync("data: " + JsonSerializer.Serialize(payload) + "\n\n", aborted);
                await response.Body.FlushAsync(aborted);
            }
            finally
            {
                writing.Release();
            }
        }

        var failures = await Task.WhenAll(choices.Select(async c =>
        {
            var choice = c.Run.Choice;
            try
            {
                choice.Add(choice.Echo, []);
                if (reply.Shape.OpensWithRole || choice.Echo.Length > 0) await Send(reply.Chunk(choice, choice.Echo, 0, opening: true));
                await Generate(c.Tokens, c.Any, stop, choice, (piece, made) =>
                {
                    choice.Add(piece, made);
                    return Send(reply.Chunk(choice, piece, made.Count));
                });
                choice.Status = await c.Run.Session.GetStatus();
                await Send(reply.Finish(choice));
                return null;
            }
            catch (SessionEndedException e)
            {
                // Deleted while it streamed: a finish reason of its own, then the error for a client that is still reading.
                choice.FinishReason = Cancelled;
                await Send(reply.Finish(choice));
                return Failure(e);
            }
            catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
            {
                logger.LogError(e, "streamed completion {Id} failed", choice.Id);
                return Failure(e);
            }
        }));
        if (reply.IncludeUsage) await Send(reply.Usage([.. choices.Select(c => c.Run.Choice)]));
        if (failures.FirstOrDefault(f => f is not null) is { } failure)
        {
            // The status line is gone already: report the failure as an event and end the stream without [DONE].
            await Send(failure.Body);
            return failure;
        }
        await response.WriteAsync("data: [DONE]\n\n", aborted);
        await response.Body.FlushAsync(aborted);
        return null;
    }

    /// <summary>
    /// Consumes a session's tokens (the first already fetched), handing each piece of final text and the tokens that
    /// made it since the last piece to <paramref name="onText"/>.
    /// </summary>
    private async Task Generate(IAsyncEnumerator<TokenEvent> tokens, bool any, IReadOnlyList<string> stop, Choice choice,
        Func<string, IReadOnlyList<TokenEvent>, Task> onText)
    {
        var decoder = served.Tokenizer.CreateStreamDecoder();
        foreach (var id in choice.Context) decoder.Push(id); // the first piece decodes in the context of the tokens before it
        var stops = new StopStrings(stop);
        var pending = new List<TokenEvent>();
        string? finish = null;
        for (bool more = any; more; more = await tokens.MoveNextAsync())
        {
            var token = tokens.Current;
            choice.ReceivedTokens++;
            // End of sequence (EOS, or BOS which llama2.c models emit between stories) is not part of the text.
            if (token.Token == served.Description.EosId || token.Token == served.Description.BosId) { finish = "stop"; break; }
            choice.CompletionTokens++;
            pending.Add(token);
            var piece = stops.Push(decoder.Push(token.Token));
            if (piece.Length > 0)
            {
                await onText(piece, pending);
                pending = [];
            }
            if (stops.Stopped) { finish = "stop"; break; }
        }
        if (!stops.Stopped)
        {
            var rest = stops.Push(decoder.Flush());
            rest += stops.Flush();
            if (rest.Length > 0) await onText(rest, pending);
        }
        // "length": the token budget is spent, or the model's context is full.
        choice.FinishReason = finish ?? "length";
    }
}
