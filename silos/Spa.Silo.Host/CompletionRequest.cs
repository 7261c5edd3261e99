using System.Text;
using System.Text.Json;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;

namespace Spa.Silo;

/// <summary>
/// The supported subset of an OpenAI completion request, validated. Unknown fields are ignored; fields whose value
/// this server cannot honour are refused with a reason rather than silently ignored.
/// </summary>
public sealed record CompletionRequest(string Model, string Prompt, int MaxTokens, bool Stream, IReadOnlyList<string> Stop,
    SamplingSettings Sampling, PluginChoice Plugin)
{
    public const int DefaultMaxTokens = 16;
    public const int MaxStopStrings = 4;

    /// <summary>Characters of one stop string: the session keeps them for a resumed completion, so they are bounded.</summary>
    public const int MaxStopLength = 256;

    /// <summary>Validates the parsed JSON body against the served model; throws <see cref="ApiError"/>.</summary>
    public static CompletionRequest Parse(JsonElement root, ServedModel served)
    {
        if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("the request body must be a JSON object");

        var model = served.Name;
        if (Field(root, "model") is { } m)
        {
            if (m.ValueKind != JsonValueKind.String) throw ApiError.BadRequest("model must be a string", "model");
            var named = m.GetString()!;
            if (named.Length > 0 && named != served.Name)
                throw new ApiError(404, $"The model '{named}' does not exist: this server serves '{served.Name}'", "model", "model_not_found");
        }

        if (Field(root, "prompt") is not { } p) throw ApiError.BadRequest("prompt is required", "prompt");
        if (p.ValueKind != JsonValueKind.String) throw ApiError.BadRequest("prompt must be a string (arrays of prompts or of tokens are not supported)", "prompt");
        var prompt = p.GetString()!;
        if (prompt.Length == 0) throw ApiError.BadRequest("prompt must not be empty", "prompt");
        // Refused before tokenizing: a token covers at most MaxPieceBytes of text, so a longer prompt cannot fit.
        if (Encoding.UTF8.GetByteCount(prompt) is var bytes && bytes > served.MaxPromptBytes)
            throw ApiError.BadRequest($"the prompt has {bytes} bytes but the model's context holds {served.ContextLength} tokens, at most {served.MaxPromptBytes} bytes of text", "prompt");

        int maxTokens = DefaultMaxTokens;
        if (Field(root, "max_tokens") is { } mt)
        {
            if (mt.ValueKind != JsonValueKind.Number || !mt.TryGetInt64(out long n))
                throw ApiError.BadRequest("max_tokens must be an integer", "max_tokens");
            if (n <= 0) throw ApiError.BadRequest($"max_tokens must be at least 1, got {n}", "max_tokens");
            if (n > served.ContextLength)
                throw ApiError.BadRequest($"max_tokens is {n} but the model's context holds {served.ContextLength} tokens", "max_tokens");
            maxTokens = (int)n;
        }

        // Sampling. temperature defaults to 0 (greedy) here, not to OpenAI's 1: the same request gives the same text.
        var sampling = new SamplingSettings
        {
            Temperature = Number(root, "temperature", 0, 2) ?? 0,
            TopP = Number(root, "top_p", 0, 1) ?? 1,
            TopK = (int)(Integer(root, "top_k", 0, int.MaxValue) ?? 0),
            RepetitionPenalty = Number(root, "repetition_penalty", 0, double.MaxValue) ?? 1,
            // No seed: one drawn for this request, as OpenAI's API does; it is stored with the session, so a resumed or
            // re-activated session goes on with the same random sequence.
            Seed = Integer(root, "seed", long.MinValue, long.MaxValue) ?? Random.Shared.NextInt64(long.MinValue, long.MaxValue),
        };
        try
        {
            sampling.ToOptions().Validate();
        }
        catch (ArgumentException e)
        {
            throw ApiError.BadRequest(e.Message);
        }

        if (Field(root, "n") is { } count && (count.ValueKind != JsonValueKind.Number || !count.TryGetInt32(out int k) || k != 1))
            throw ApiError.BadRequest("n must be 1: one completion per request", "n");
        RefuseUnsupported(root);

        bool stream = false;
        if (Field(root, "stream") is { } s)
        {
            if (s.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw ApiError.BadRequest("stream must be a boolean", "stream");
            stream = s.GetBoolean();
        }

        var stop = new List<string>();
        if (Field(root, "stop") is { } st)
        {
            if (st.ValueKind == JsonValueKind.String) stop.Add(st.GetString()!);
            else if (st.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in st.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.String) throw ApiError.BadRequest("stop must be a string or an array of strings", "stop");
                    if (stop.Count == MaxStopStrings) throw ApiError.BadRequest($"stop holds at most {MaxStopStrings} strings", "stop");
                    stop.Add(item.GetString()!);
                }
            }
            else throw ApiError.BadRequest("stop must be a string or an array of strings", "stop");
            if (stop.Any(s => s.Length is 0 or > MaxStopLength))
                throw ApiError.BadRequest($"each stop string must have 1 to {MaxStopLength} characters", "stop");
        }

        return new CompletionRequest(model, prompt, maxTokens, stream, stop, sampling, ParsePlugin(Field(root, "spa")));
    }

    /// <summary>
    /// OpenAI settings this server does not honour yet, each with its neutral value: asking for anything else is refused
    /// with the field's name rather than ignored. The neutral values, which clients such as LangChain send on every
    /// request, pass.
    /// </summary>
    private static readonly (string Field, string Neutral, Func<JsonElement, bool> IsNeutral)[] Unsupported =
    [
        ("presence_penalty", "0", v => v.ValueKind == JsonValueKind.Number && v.GetDouble() == 0),
        ("frequency_penalty", "0", v => v.ValueKind == JsonValueKind.Number && v.GetDouble() == 0),
        ("logprobs", "null or false", v => v.ValueKind == JsonValueKind.False),
        ("echo", "false", v => v.ValueKind == JsonValueKind.False),
        ("best_of", "1", v => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) && n == 1),
        ("logit_bias", "{}", v => v.ValueKind == JsonValueKind.Object && !v.EnumerateObject().Any()),
        ("suffix", "\"\"", v => v.ValueKind == JsonValueKind.String && v.GetString()!.Length == 0),
    ];

    private static void RefuseUnsupported(JsonElement root)
    {
        foreach (var (field, neutral, isNeutral) in Unsupported)
            if (Field(root, field) is { } value && !isNeutral(value))
                throw ApiError.BadRequest($"{field} is not supported by this server (only {neutral})", field);
    }

    internal static double? Number(JsonElement obj, string name, double min, double max)
    {
        if (Field(obj, name) is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Number) throw ApiError.BadRequest($"{name} must be a number", name);
        double x = value.GetDouble();
        return x >= min && x <= max ? x : throw ApiError.BadRequest($"{name} must be between {min} and {max}, got {x}", name);
    }

    internal static long? Integer(JsonElement obj, string name, long min, long max)
    {
        if (Field(obj, name) is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long x)) throw ApiError.BadRequest($"{name} must be an integer", name);
        return x >= min && x <= max ? x : throw ApiError.BadRequest($"{name} must be between {min} and {max}, got {x}", name);
    }

    /// <summary>A string field (null when absent); <paramref name="prefix"/> names the object it is in, for the error.</summary>
    internal static string? Text(JsonElement obj, string name, string prefix = "")
    {
        if (Field(obj, name) is not { } value) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw ApiError.BadRequest($"{prefix}{name} must be a string", prefix + name);
    }

    /// <summary>The field's value; absent and JSON null are the same.</summary>
    internal static JsonElement? Field(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private static readonly string[] PluginFields = ["mode", "device_id", "tau", "m_budget", "fallback"];

    /// <summary>
    /// The request's <c>spa</c> object: the combination mode, the device that holds the plugin, the gate's threshold or
    /// a round-trip budget, and what to do when the device is unavailable. Unknown fields are refused, so that a
    /// misspelt setting is not silently ignored; the values are checked by <see cref="PluginChoice.Validate"/>.
    /// </summary>
    internal static PluginChoice ParsePlugin(JsonElement? spa)
    {
        if (spa is not { } o) return PluginChoice.None;
        if (o.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("spa must be an object", "spa");
        foreach (var property in o.EnumerateObject())
            if (!PluginFields.Contains(property.Name))
                throw ApiError.BadRequest($"spa.{property.Name} is not a setting: use {string.Join(", ", PluginFields)}", "spa." + property.Name);
        var plugin = new PluginChoice
        {
            Mode = Choice(o, "mode", SessionMode.Base),
            DeviceId = Text(o, "device_id", "spa."),
            Tau = Number(o, "tau", 0, 1),
            MBudget = Number(o, "m_budget", 0, 1),
            Fallback = Choice(o, "fallback", FallbackPolicy.Base),
        };
        try
        {
            plugin.Validate();
        }
        catch (InvalidSettingException e)
        {
            throw ApiError.BadRequest(e.Message, e.Setting);
        }
        return plugin;
    }

    /// <summary>One of an enum's wire names; absent: <paramref name="absent"/>.</summary>
    private static T Choice<T>(JsonElement o, string name, T absent) where T : struct, Enum
    {
        if (Text(o, name, "spa.") is not { } text) return absent;
        return WireNames.TryParse<T>(text, out var value) ? value
            : throw ApiError.BadRequest($"spa.{name} must be one of {WireNames.List<T>()}, got '{text}'", "spa." + name);
    }
}
