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

    /// <summary>
    /// An HTTP completion; a child of ASP.NET Core's request activity when that is traced. Named as the GenAI semantic
    /// conventions name an inference span, <c>{operation} {model}</c> (its operation name stays <see cref="Completion"/>),
    /// with their <c>gen_ai.*</c> request attributes beside the <c>spa.*</c> ones; <paramref name="sampling"/> is null
    /// for a resumed session, whose settings are stored.
    /// </summary>
    public static Activity? StartCompletion(string session, SessionMode mode, int maxTokens, bool stream, string operation, string model,
        SamplingSettings? sampling, IReadOnlyList<string> stop)
    {
        var activity = Source.StartActivity(Completion, ActivityKind.Internal);
        if (activity is not { IsAllDataRequested: true }) return activity;
        activity.DisplayName = $"{operation} {model}";
        activity.SetTag("spa.session", session)
            .SetTag("spa.mode", WireNames.Of(mode)).SetTag("spa.max_tokens", maxTokens).SetTag("spa.stream", stream)
            .SetTag("gen_ai.operation.name", operation).SetTag("gen_ai.provider.name", SpaTelemetry.GenAiProvider).SetTag("gen_ai.request.model", model)
            .SetTag("gen_ai.request.max_tokens", maxTokens);
        if (stop.Count > 0) activity.SetTag("gen_ai.request.stop_sequences", stop.ToArray());
        if (sampling is not null)
            activity.SetTag("gen_ai.request.temperature", sampling.Temperature).SetTag("gen_ai.request.top_p", sampling.TopP)
                .SetTag("gen_ai.request.top_k", sampling.TopK).SetTag("gen_ai.request.seed", sampling.Seed)
                .SetTag("gen_ai.request.presence_penalty", sampling.PresencePenalty).SetTag("gen_ai.request.frequency_penalty", sampling.FrequencyPenalty);
        return activity;
    }

    /// <summary>The answer's GenAI attributes: its id and model, the tokens in and out, each choice's finish reason.</summary>
    public static void CompletionDone(Activity? activity, string responseId, string model, int inputTokens, int outputTokens, string[] finishReasons)
    {
        if (activity is { IsAllDataRequested: true })
            activity.SetTag("spa.completion_tokens", outputTokens).SetTag("spa.finish_reason", finishReasons[0])
                .SetTag("gen_ai.response.id", responseId).SetTag("gen_ai.response.model", model)
                .SetTag("gen_ai.usage.input_tokens", inputTokens).SetTag("gen_ai.usage.output_tokens", outputTokens)
                .SetTag("gen_ai.response.finish_reasons", finishReasons);
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
