using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Spa.Grains;
using Spa.Grains.Abstractions;
using StopStrings = Spa.Model.Generation.StopStrings;

namespace Spa.Silo;

/// <summary>
/// A completion's session after (or while) it ran, by the completion's id, for its owner only: any other user, like
/// an id that was never issued or has expired, gets 404, so that ids cannot be probed.
/// <list type="bullet">
/// <item><c>GET /v1/sessions/{id}</c>: its status, its tokens and text so far, and its counters.</item>
/// <item><c>POST /v1/sessions/{id}/resume</c> with <c>{"from": N, "max_tokens": M, "stream": bool}</c> (all optional): the
/// completion of its tokens from index N (default 0: all), generating until the budget, raised by M (default 0), is spent.</item>
/// <item><c>DELETE /v1/sessions/{id}</c>: cancels and deletes it.</item>
/// </list>
/// </summary>
internal sealed class SessionsEndpoint(ServedModel served, IGrainFactory grains, CompletionsEndpoint completions, IOptions<SpaSessionOptions> options)
{
    public async Task Get(HttpContext context, string id)
    {
        if (await Owned(context, id) is not var (_, stored)) return;
        // The text as the completion gave it: decoded after the prompt, cut at the request's stop strings.
        var text = new StringBuilder();
        var decoder = served.Tokenizer.CreateStreamDecoder();
        var stops = new StopStrings(stored.Stop);
        foreach (var token in stored.History[..stored.PromptLength]) decoder.Push(token);
        foreach (var token in stored.GeneratedTokens.TakeWhile(t => t != served.Description.EosId && t != served.Description.BosId))
            text.Append(stops.Push(decoder.Push(token)));
        text.Append(stops.Push(decoder.Flush())).Append(stops.Flush());
        var s = stored.Status;
        await context.Response.WriteAsJsonAsync(new
        {
            id,
            @object = "session",
            model = served.Name,
            status = stored.Finished ? "finished" : stored.Generated >= stored.MaxGenerated ? "length" : "incomplete",
            finish_reason = stored.Finished ? WireNames.Of(s.StopReason) : null,
            prompt_tokens = stored.PromptLength,
            generated_tokens = stored.Generated,
            max_tokens = stored.MaxGenerated,
            tokens = stored.GeneratedTokens,
            text = text.ToString(),
            spa = new
            {
                mode = WireNames.Of(s.Mode),
                transmissions = s.Edge.Transmissions,
                failed_transmissions = s.Edge.FailedTransmissions,
                edge_tokens = s.Edge.EdgeTokens,
                bytes_up = s.Edge.BytesUp,
                bytes_down = s.Edge.BytesDown,
                degraded = s.Degraded,
                fallbacks = s.Edge.Fallbacks,
            },
        });
    }

    public async Task Resume(HttpContext context, string id)
    {
        int from = 0, more = 0;
        bool stream = false, includeUsage = false;
        try
        {
            if (context.Request.ContentLength is not 0)
            {
                using var body = await RequestBody.ReadJsonAsync(context);
                var root = body.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("the request body must be a JSON object");
                from = (int)(CompletionRequest.Integer(root, "from", 0, int.MaxValue) ?? 0);
                more = (int)(CompletionRequest.Integer(root, "max_tokens", 0, served.ContextLength) ?? 0);
                (stream, includeUsage) = CompletionRequest.Streaming(root);
            }
        }
        catch (ApiError error)
        {
            await error.WriteAsync(context.Response);
            return;
        }
        if (await Owned(context, id) is not var (session, stored)) return;
        if (from > stored.Generated)
        {
            await ApiError.BadRequest($"from is {from} but the session has {stored.Generated} tokens", "from").WriteAsync(context.Response);
            return;
        }
        int budget = more == 0 ? stored.MaxGenerated
            : await SiloLoss.RetryAsync(() => session.RaiseBudget(more).AsTask(), $"raising the budget of session {id}", options.Value.Retry);
        await completions.Resume(context, id, session, stored, from, budget, stream, includeUsage);
    }

    public async Task Delete(HttpContext context, string id)
    {
        if (await Owned(context, id) is not var (session, _)) return;
        await SiloLoss.RetryAsync(() => session.End().AsTask(), $"deleting session {id}", options.Value.Retry);
        await context.Response.WriteAsJsonAsync(new { id, @object = "session", deleted = true });
    }

    /// <summary>The session of <paramref name="id"/> when it exists and belongs to the request's user; otherwise writes 404 and returns null.</summary>
    private async Task<(IDecodingSessionGrain Session, SessionSnapshot Stored)?> Owned(HttpContext context, string id)
    {
        // Only ids this server issues (the prefix and 32 hex digits) reach a grain or a log line.
        if (id.StartsWith(CompletionsEndpoint.IdPrefix, StringComparison.Ordinal) && id.Length == CompletionsEndpoint.IdPrefix.Length + 32
            && !id.AsSpan(CompletionsEndpoint.IdPrefix.Length).ContainsAnyExcept("0123456789abcdef"))
        {
            var session = grains.GetGrain<IDecodingSessionGrain>(id[CompletionsEndpoint.IdPrefix.Length..]);
            var stored = await SiloLoss.RetryAsync(() => session.Describe().AsTask(), $"reading session {id}", options.Value.Retry);
            if (stored is not null && stored.User == (string)context.Items[SiloHost.UserItem]!) return (session, stored);
        }
        await new ApiError(StatusCodes.Status404NotFound, $"no session '{id}'", code: "session_not_found").WriteAsync(context.Response);
        return null;
    }
}
