using System.Diagnostics;
using Spa.Grains.Abstractions;

namespace Spa.Grains;

/// <summary>
/// The activity source <c>Spa</c>: one activity per HTTP completion (<c>spa.completion</c>), per generation in a session
/// grain (<c>spa.generation</c>) and per token step (<c>spa.token</c>), each device round trip an event
/// (<c>spa.edge_round_trip</c>) on its token step. With nothing listening every activity is null and the callers skip
/// the attribute work, so an untraced server pays one listener check per activity.
/// </summary>
public static class SpaTracing
{
    public const string Completion = "spa.completion";
    public const string Generation = "spa.generation";
    public const string Token = "spa.token";
    public const string RoundTrip = "spa.edge_round_trip";

    public static readonly ActivitySource Source = new(SpaTelemetry.ActivitySourceName);

    /// <summary>An HTTP completion; a child of ASP.NET Core's request activity when that is traced.</summary>
    public static Activity? StartCompletion(string session, SessionMode mode, int maxTokens, bool stream)
    {
        var activity = Source.StartActivity(Completion);
        if (activity is { IsAllDataRequested: true })
            activity.SetTag("spa.session", session)
                .SetTag("spa.mode", WireNames.Of(mode)).SetTag("spa.max_tokens", maxTokens).SetTag("spa.stream", stream);
        return activity;
    }

    public static void CompletionDone(Activity? activity, int completionTokens, string finishReason)
    {
        if (activity is { IsAllDataRequested: true })
            activity.SetTag("spa.completion_tokens", completionTokens).SetTag("spa.finish_reason", finishReason);
    }

    /// <summary>A generation of <paramref name="mode"/> over <paramref name="shards"/> shards; a child of the grain call's activity, if any.</summary>
    public static Activity? StartGeneration(string session, SessionMode mode, int shards, int promptTokens)
    {
        var activity = Source.StartActivity(Generation);
        if (activity is { IsAllDataRequested: true })
            activity.SetTag("spa.session", session)
                .SetTag("spa.mode", WireNames.Of(mode))
                .SetTag("spa.shards", shards)
                .SetTag("spa.prompt_tokens", promptTokens);
        return activity;
    }

    /// <summary>Closes a generation with what it produced.</summary>
    public static void EndGeneration(Activity? activity, long generatedTokens, long transmissions, StopReason stopReason)
    {
        if (activity is null) return;
        if (activity.IsAllDataRequested)
            activity.SetTag("spa.generated_tokens", generatedTokens)
                .SetTag("spa.transmissions", transmissions)
                .SetTag("spa.stop_reason", WireNames.Of(stopReason));
        activity.Dispose();
    }

    /// <summary>The step that makes token <paramref name="index"/> of a generation (0: the first generated token).</summary>
    public static Activity? StartToken(Activity? generation, SessionMode mode, int shards, int index)
    {
        var activity = generation is null ? Source.StartActivity(Token) : Source.StartActivity(Token, ActivityKind.Internal, generation.Context);
        if (activity is { IsAllDataRequested: true })
            activity.SetTag("spa.mode", WireNames.Of(mode))
                .SetTag("spa.shards", shards)
                .SetTag("spa.token_index", index);
        return activity;
    }

    /// <summary>Where the gate sent the token: "edge" or "cloud".</summary>
    public static void GateDecision(Activity? token, bool edge)
    {
        if (token is { IsAllDataRequested: true }) token.SetTag("spa.gate", edge ? "edge" : "cloud");
    }

    /// <summary>What a token step made: the token, its round trips as events, and whether it went on without its device.</summary>
    public static void TokenMade(Activity? token, int next, EdgeCounter usage)
    {
        if (token is not { IsAllDataRequested: true }) return;
        token.SetTag("spa.token", next).SetTag("spa.transmissions", usage.Transmissions);
        if (usage.Degraded) token.SetTag("spa.degraded", usage.Failure);
        foreach (var trip in usage.RoundTrips ?? [])
            token.AddEvent(new ActivityEvent(RoundTrip, tags: new ActivityTagsCollection
            {
                ["spa.call_kind"] = trip.Kind.ToString(),
                ["spa.layer"] = trip.Layer,
                ["spa.bytes_up"] = trip.BytesUp,
                ["spa.bytes_down"] = trip.BytesDown,
                ["spa.edge_ms"] = trip.EdgeMs,
                ["spa.network_ms"] = trip.NetworkMs,
            }));
    }

    /// <summary>Whether the step's round trips are worth keeping one by one: only for a recorded token step.</summary>
    public static bool Records(Activity? token) => token is { IsAllDataRequested: true };
}
