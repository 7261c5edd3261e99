namespace Spa.Grains.Abstractions;

/// <summary>
/// A generation: the prompt's tokens and how many to generate, on which model and in how many shards, with which
/// sampling and which plugin, for whom. Build it by name: <c>new GenerationRequest(prompt, 40) { Plugin = ... }</c>.
/// <see cref="Validate"/> is the one check of a request; the session runs it again, for callers other than the HTTP API.
/// </summary>
/// <param name="PromptTokens">The prompt; at least one token.</param>
/// <param name="MaxTokens">The token budget of the call, at least 1.</param>
[GenerateSerializer, Alias("spa.GenerationRequest")]
public sealed record GenerationRequest(
    [property: Id(0)] int[] PromptTokens,
    [property: Id(1)] int MaxTokens)
{
    /// <summary>Shards per session; 0: the configured default (Spa:Model:Shards).</summary>
    [Id(2)] public int Shards { get; init; }

    /// <summary>The model's name; null: the configured model.</summary>
    [Id(3)] public string? Model { get; init; }

    [Id(4)] public SamplingSettings Sampling { get; init; } = SamplingSettings.Greedy;

    [Id(5)] public PluginChoice Plugin { get; init; } = PluginChoice.None;

    /// <summary>Who asks: a plugin mode's device must belong to this user.</summary>
    [Id(6)] public string? User { get; init; }

    /// <summary>
    /// The request's stop strings. The session does not cut at them (the caller decodes the text); it keeps them so that
    /// a resumed session's text is cut where the original completion's was.
    /// </summary>
    [Id(7)] public string[] Stop { get; init; } = [];

    /// <summary>Throws <see cref="InvalidSettingException"/> with a one-line reason for the first setting that cannot run.</summary>
    public void Validate()
    {
        if (PromptTokens is not { Length: > 0 }) throw new InvalidSettingException("the prompt has no tokens", "prompt");
        if (MaxTokens <= 0) throw new InvalidSettingException($"max_tokens must be at least 1, got {MaxTokens}", "max_tokens");
        if (Shards < 0) throw new InvalidSettingException($"the shard count must be positive (0: the configured one), got {Shards}", "shards");
        Plugin.Validate();
    }
}

/// <summary>
/// Sampling as <c>Spa.Model.Sampling.SamplingOptions</c>: <see cref="Temperature"/> 0 is greedy (the default); otherwise
/// the next token is drawn after top-k (0: off) and top-p (1: off), from a random sequence fixed by <see cref="Seed"/>
/// (null: the engine's default seed), so that the same request gives the same tokens as the in-process engine.
/// <see cref="RepetitionPenalty"/> 1 is off. The session checks the values with the engine's own rules.
/// </summary>
[GenerateSerializer, Alias("spa.SamplingSettings")]
public sealed record SamplingSettings
{
    public static readonly SamplingSettings Greedy = new();

    [Id(0)] public double Temperature { get; init; }
    [Id(1)] public double TopP { get; init; } = 1.0;
    [Id(2)] public int TopK { get; init; }
    [Id(3)] public long? Seed { get; init; }
    [Id(4)] public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>OpenAI's penalties, over the tokens generated so far.</summary>
    [Id(5)] public double PresencePenalty { get; init; }

    [Id(6)] public double FrequencyPenalty { get; init; }

    /// <summary>Added to the given tokens' logits (OpenAI's <c>logit_bias</c>); null: none.</summary>
    [Id(7)] public Dictionary<int, double>? LogitBias { get; init; }

    /// <summary>Log-probabilities wanted with each token, and of how many most likely alternatives; null: none.</summary>
    [Id(8)] public int? Logprobs { get; init; }
}

/// <summary>A token and its log-probability under the model's distribution.</summary>
[GenerateSerializer, Alias("spa.TokenLogprob")]
public sealed record TokenLogprob([property: Id(0)] int Token, [property: Id(1)] float Logprob);

/// <summary>
/// The plugin a generation runs with: the <see cref="Mode"/>, the device <see cref="DeviceId"/> that holds the user's
/// plugin, the gate's threshold <see cref="Tau"/> (null: the plugin's own) or a round-trip budget <see cref="MBudget"/>
/// (switch and spa), and what to do when the device is unavailable. Its settings are named as in the HTTP API's
/// <c>spa</c> object, and so are they in <see cref="Validate"/>'s reasons.
/// </summary>
[GenerateSerializer, Alias("spa.PluginChoice")]
public sealed record PluginChoice
{
    /// <summary>The base alone.</summary>
    public static readonly PluginChoice None = new();

    [Id(0)] public SessionMode Mode { get; init; } = SessionMode.Base;
    [Id(1)] public string? DeviceId { get; init; }
    [Id(2)] public double? Tau { get; init; }
    [Id(3)] public double? MBudget { get; init; }
    [Id(4)] public FallbackPolicy Fallback { get; init; } = FallbackPolicy.Base;

    /// <summary>Throws <see cref="InvalidSettingException"/> with a one-line reason for the first setting that cannot run.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Mode)) throw new InvalidSettingException($"spa.mode must be one of {WireNames.List<SessionMode>()}, got {(int)Mode}", "spa.mode");
        if (!Enum.IsDefined(Fallback)) throw new InvalidSettingException($"spa.fallback must be one of {WireNames.List<FallbackPolicy>()}, got {(int)Fallback}", "spa.fallback");
        var mode = WireNames.Of(Mode);
        if (Mode != SessionMode.Base && string.IsNullOrEmpty(DeviceId))
            throw new InvalidSettingException($"spa.mode '{mode}' runs a plugin on the user's device: give spa.device_id", "spa.device_id");
        if (DeviceId is not null) ClientInputs.CheckDeviceId(DeviceId, "spa.device_id");
        if (Mode == SessionMode.Base && DeviceId is not null)
            throw new InvalidSettingException("spa.device_id is given but spa.mode is 'base', which uses no device", "spa.device_id");
        if (Tau is { } tau && !(tau is >= 0 and <= 1)) throw new InvalidSettingException($"spa.tau must be between 0 and 1, got {tau}", "spa.tau");
        if (MBudget is { } budget && !(budget is >= 0 and <= 1)) throw new InvalidSettingException($"spa.m_budget must be between 0 and 1, got {budget}", "spa.m_budget");
        if ((Tau ?? MBudget) is not null && !Mode.IsGated())
            throw new InvalidSettingException($"spa.tau and spa.m_budget set the gate of modes switch and spa, not '{mode}'", Tau is not null ? "spa.tau" : "spa.m_budget");
        if (Tau is not null && MBudget is not null) throw new InvalidSettingException("give spa.tau or spa.m_budget, not both", "spa.m_budget");
    }
}

/// <summary>One generated token: its place in the generation, whether the edge took part in it, and whether it was made without a plugin the mode wanted.</summary>
[GenerateSerializer, Alias("spa.TokenEvent")]
public sealed record TokenEvent(
    [property: Id(0)] int Index,
    [property: Id(1)] int Token,
    [property: Id(2)] bool Edge,
    [property: Id(3)] bool Degraded)
{
    /// <summary>The token's log-probability, when the request asked for them (not kept for stored tokens).</summary>
    [Id(4)] public float? Logprob { get; init; }

    /// <summary>The most likely tokens at this step with theirs, most likely first, when the request asked for them.</summary>
    [Id(5)] public TokenLogprob[]? TopLogprobs { get; init; }
}

/// <summary>
/// Tokens generated by one call, why they ended, and the counters of the whole generation so far (every call since
/// <c>Generate</c>): tokens generated, the edge's part (<see cref="Edge"/>), and the time everything but the device and
/// the network took (<see cref="CloudMs"/>). <see cref="Replays"/>: steps this activation had to replay because a shard
/// had lost the session's cache.
/// </summary>
[GenerateSerializer, Alias("spa.GenerationResult")]
public sealed record GenerationResult(
    [property: Id(0)] int[] Tokens,
    [property: Id(1)] StopReason StopReason,
    [property: Id(2)] int HistoryLength,
    [property: Id(3)] int Replays)
{
    [Id(4)] public SessionMode Mode { get; init; }
    [Id(5)] public long GeneratedTokens { get; init; }
    [Id(6)] public EdgeTotals Edge { get; init; } = EdgeTotals.None;
    [Id(7)] public double CloudMs { get; init; }

    /// <summary>Round trips to the edge per generated token.</summary>
    public double M => GeneratedTokens == 0 ? 0 : (double)Edge.Transmissions / GeneratedTokens;

    /// <summary>Some token was made without the plugin because the device was unavailable.</summary>
    public bool Degraded => Edge.Fallbacks > 0;

    public double TotalMs => CloudMs + Edge.EdgeMs + Edge.NetworkMs;
}

/// <summary>
/// What a generation asked of its device so far: round trips it answered (<see cref="Transmissions"/>) and the bytes
/// they carried (fp32), calls it did not answer (<see cref="FailedTransmissions"/>: failed, timed out, or refused while
/// it was offline), tokens the device took part in (<see cref="EdgeTokens"/>), times a token was made without the plugin
/// because the device was unavailable (<see cref="Fallbacks"/>), the device's compute time and the rest of the round
/// trips' time, unanswered calls' waits included (<see cref="NetworkMs"/>). Device calls of a step that had to be
/// replayed count too.
/// </summary>
[GenerateSerializer, Alias("spa.EdgeTotals")]
public sealed record EdgeTotals
{
    public static readonly EdgeTotals None = new();

    [Id(0)] public long Transmissions { get; init; }
    [Id(1)] public long FailedTransmissions { get; init; }
    [Id(2)] public long BytesUp { get; init; }
    [Id(3)] public long BytesDown { get; init; }
    [Id(4)] public long EdgeTokens { get; init; }
    [Id(5)] public long Fallbacks { get; init; }
    [Id(6)] public double EdgeMs { get; init; }
    [Id(7)] public double NetworkMs { get; init; }

    /// <summary>These totals with one token's round trips added; <paramref name="asked"/>: the device took part in it.</summary>
    public EdgeTotals Add(EdgeUsage usage, bool asked) => this with
    {
        Transmissions = Transmissions + usage.Transmissions,
        FailedTransmissions = FailedTransmissions + usage.FailedTransmissions,
        BytesUp = BytesUp + usage.BytesUp,
        BytesDown = BytesDown + usage.BytesDown,
        EdgeTokens = EdgeTokens + (asked ? 1 : 0),
        EdgeMs = EdgeMs + usage.EdgeMs,
        NetworkMs = NetworkMs + usage.NetworkMs,
    };
}
