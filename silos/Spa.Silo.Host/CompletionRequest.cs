using System.Text;
using System.Text.Json;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;

namespace Spa.Silo;

/// <summary>A prompt as the client sent it: text, or the model's token ids (then <see cref="Text"/> is null).</summary>
public sealed record PromptInput(string? Text, IReadOnlyList<int>? Tokens);

/// <summary>
/// The supported subset of an OpenAI completion or chat completion request, validated: one prompt per choice (a chat
/// request's messages already rendered through the chat template). Unknown fields are ignored; fields whose value this
/// server cannot honour are refused with a reason rather than silently ignored.
/// </summary>
public sealed record CompletionRequest(string Model, IReadOnlyList<PromptInput> Prompts, int MaxTokens, bool Stream, bool IncludeUsage, bool Echo,
    IReadOnlyList<string> Stop, SamplingSettings Sampling, PluginChoice Plugin)
{
    public const int DefaultMaxTokens = 16;
    public const int MaxStopStrings = 4;

    /// <summary>Characters of one stop string: the session keeps them for a resumed completion, so they are bounded.</summary>
    public const int MaxStopLength = 256;

    /// <summary>Prompts of one request, each its own choice and session.</summary>
    public const int MaxPrompts = 16;

    /// <summary>OpenAI's bounds: alternatives per token for a completion and for a chat, and tokens in a logit bias.</summary>
    public const int MaxCompletionLogprobs = 5, MaxChatLogprobs = 20, MaxLogitBias = 300;

    /// <summary>Validates a <c>/v1/completions</c> body against the served model; throws <see cref="ApiError"/>.</summary>
    public static CompletionRequest Parse(JsonElement root, ServedModel served)
    {
        CheckModel(root, served);
        if (Field(root, "prompt") is not { } p) throw ApiError.BadRequest("prompt is required", "prompt");
        var prompts = ParsePrompts(p, served);
        bool echo = Boolean(root, "echo") ?? false;
        // Completions ask for log-probabilities with the count of alternatives (at most 5, as OpenAI); false is none.
        int? logprobs = Field(root, "logprobs") is { ValueKind: JsonValueKind.False } ? null : (int?)Integer(root, "logprobs", 0, MaxCompletionLogprobs);
        RefuseUnsupported(root, CompletionSettings);
        return Common(root, served, prompts, echo, Integer(root, "max_tokens", long.MinValue, long.MaxValue), "max_tokens", logprobs);
    }

    /// <summary>
    /// Validates a <c>/v1/chat/completions</c> body: its messages become one prompt through <paramref name="template"/>;
    /// the budget is <c>max_completion_tokens</c>, or the older <c>max_tokens</c>.
    /// </summary>
    public static CompletionRequest ParseChat(JsonElement root, ServedModel served, ChatTemplate template)
    {
        CheckModel(root, served);
        if (Field(root, "messages") is not { ValueKind: JsonValueKind.Array } m || m.GetArrayLength() == 0)
            throw ApiError.BadRequest("messages must be a non-empty array of {role, content}", "messages");
        var messages = ChatMessage.ParseAll(m, served.MaxPromptBytes);
        if (Field(root, "response_format") is { } format && (format.ValueKind != JsonValueKind.Object || Text(format, "type", "response_format.") != "text"))
            throw ApiError.BadRequest("response_format: only {\"type\": \"text\"} is supported (no JSON mode or schema)", "response_format");
        RefuseUnsupported(root, ChatSettings);
        // Chat asks with logprobs: true, and top_logprobs alternatives (at most 20, as OpenAI).
        int? top = (int?)Integer(root, "top_logprobs", 0, MaxChatLogprobs);
        int? logprobs = Boolean(root, "logprobs") is true ? top ?? 0
            : top is null ? null : throw ApiError.BadRequest("top_logprobs needs logprobs: true", "top_logprobs");
        var prompt = new PromptInput(null, template.Render(messages, served.Tokenizer));
        var budget = Integer(root, "max_completion_tokens", long.MinValue, long.MaxValue) is { } completionTokens
            ? (completionTokens, "max_completion_tokens") : (Integer(root, "max_tokens", long.MinValue, long.MaxValue), "max_tokens");
        return Common(root, served, [prompt], echo: false, budget.Item1, budget.Item2, logprobs);
    }

    private static void CheckModel(JsonElement root, ServedModel served)
    {
        if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("the request body must be a JSON object");
        if (Field(root, "model") is not { } m) return;
        if (m.ValueKind != JsonValueKind.String) throw ApiError.BadRequest("model must be a string", "model");
        var named = m.GetString()!;
        if (named.Length > 0 && named != served.Name)
            throw new ApiError(404, $"The model '{named}' does not exist: this server serves '{served.Name}'", "model", "model_not_found");
    }

    /// <summary>
    /// <c>prompt</c> as OpenAI takes it: a string, an array of strings (a choice each), an array of token ids, or an
    /// array of such arrays. Text is refused by its bytes before tokenizing: a token covers at most
    /// <see cref="ServedModel.MaxPieceBytes"/>, so a longer prompt cannot fit the context.
    /// </summary>
    private static List<PromptInput> ParsePrompts(JsonElement p, ServedModel served)
    {
        const string Forms = "prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids";
        PromptInput TextPrompt(JsonElement e)
        {
            var text = e.GetString()!;
            if (text.Length == 0) throw ApiError.BadRequest("prompt must not be empty", "prompt");
            if (Encoding.UTF8.GetByteCount(text) is var bytes && bytes > served.MaxPromptBytes)
                throw ApiError.BadRequest($"the prompt has {bytes} bytes but the model's context holds {served.ContextLength} tokens, at most {served.MaxPromptBytes} bytes of text", "prompt");
            return new PromptInput(text, null);
        }
        PromptInput TokenPrompt(JsonElement e)
        {
            if (e.GetArrayLength() == 0) throw ApiError.BadRequest("a prompt of token ids must not be empty", "prompt");
            if (e.GetArrayLength() >= served.ContextLength)
                throw ApiError.BadRequest($"the prompt has {e.GetArrayLength()} tokens but the model's context holds {served.ContextLength}, leaving no room to generate", "prompt");
            var ids = new List<int>(e.GetArrayLength());
            foreach (var id in e.EnumerateArray())
            {
                if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int token)) throw ApiError.BadRequest(Forms, "prompt");
                if (token < 0 || token >= served.Tokenizer.VocabSize)
                    throw ApiError.BadRequest($"token id {token} is not in the model's vocabulary of {served.Tokenizer.VocabSize}", "prompt");
                ids.Add(token);
            }
            return new PromptInput(null, ids);
        }

        if (p.ValueKind == JsonValueKind.String) return [TextPrompt(p)];
        if (p.ValueKind != JsonValueKind.Array || p.GetArrayLength() == 0) throw ApiError.BadRequest(Forms, "prompt");
        var items = p.EnumerateArray().ToList();
        if (items.All(i => i.ValueKind == JsonValueKind.Number)) return [TokenPrompt(p)];
        if (items.Count > MaxPrompts) throw ApiError.BadRequest($"prompt holds at most {MaxPrompts} prompts, got {items.Count}", "prompt");
        if (items.All(i => i.ValueKind == JsonValueKind.String)) return [.. items.Select(TextPrompt)];
        if (items.All(i => i.ValueKind == JsonValueKind.Array)) return [.. items.Select(TokenPrompt)];
        throw ApiError.BadRequest(Forms, "prompt");
    }

    /// <summary>What completions and chat completions share: the budget, sampling, n, streaming, stop strings and the spa object.</summary>
    private static CompletionRequest Common(JsonElement root, ServedModel served, IReadOnlyList<PromptInput> prompts, bool echo, long? budget, string budgetField,
        int? logprobs)
    {
        int maxTokens = DefaultMaxTokens;
        if (budget is { } n)
        {
            if (n <= 0) throw ApiError.BadRequest($"{budgetField} must be at least 1, got {n}", budgetField);
            if (n > served.ContextLength)
                throw ApiError.BadRequest($"{budgetField} is {n} but the model's context holds {served.ContextLength} tokens", budgetField);
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
            PresencePenalty = Number(root, "presence_penalty", -2, 2) ?? 0,
            FrequencyPenalty = Number(root, "frequency_penalty", -2, 2) ?? 0,
            LogitBias = LogitBias(root, served),
            Logprobs = logprobs,
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
            throw ApiError.BadRequest("n must be 1: one choice per prompt (send an array of prompts for several)", "n");

        var (stream, includeUsage) = Streaming(root);

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

        return new CompletionRequest(served.Name, prompts, maxTokens, stream, includeUsage, echo, stop, sampling, ParsePlugin(Field(root, "spa")));
    }

    /// <summary>
    /// OpenAI settings this server does not honour yet, each with its neutral value: asking for anything else is refused
    /// with the field's name rather than ignored. The neutral values, which clients such as LangChain send on every
    /// request, pass.
    /// </summary>
    private static readonly (string Field, string Neutral, Func<JsonElement, bool> IsNeutral)[] CompletionSettings =
    [
        ("best_of", "1", v => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) && n == 1),
        ("suffix", "\"\"", v => v.ValueKind == JsonValueKind.String && v.GetString()!.Length == 0),
    ];

    /// <summary>As <see cref="CompletionSettings"/>, for chat: tools, functions and audio are not served.</summary>
    private static readonly (string Field, string Neutral, Func<JsonElement, bool> IsNeutral)[] ChatSettings =
    [
        ("tools", "[]", v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0),
        ("tool_choice", "\"none\"", v => v.ValueKind == JsonValueKind.String && v.GetString() == "none"),
        ("functions", "[]", v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0),
        ("function_call", "\"none\"", v => v.ValueKind == JsonValueKind.String && v.GetString() == "none"),
        ("audio", "null", _ => false),
        ("modalities", "[\"text\"]", v => v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(m => m.ValueKind == JsonValueKind.String && m.GetString() == "text")),
    ];

    /// <summary><c>logit_bias</c>: token ids (as strings, JSON's keys) of the vocabulary, each with a bias in [-100, 100].</summary>
    private static Dictionary<int, double>? LogitBias(JsonElement root, ServedModel served)
    {
        if (Field(root, "logit_bias") is not { } biases) return null;
        if (biases.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("logit_bias must be an object of token ids and biases", "logit_bias");
        var parsed = new Dictionary<int, double>();
        foreach (var bias in biases.EnumerateObject())
        {
            if (parsed.Count == MaxLogitBias) throw ApiError.BadRequest($"logit_bias holds at most {MaxLogitBias} tokens", "logit_bias");
            if (!int.TryParse(bias.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int token) || token >= served.Tokenizer.VocabSize)
                throw ApiError.BadRequest($"logit_bias: '{bias.Name}' is not a token id of the model's vocabulary of {served.Tokenizer.VocabSize}", "logit_bias");
            if (bias.Value.ValueKind != JsonValueKind.Number || !(bias.Value.GetDouble() is >= -100 and <= 100))
                throw ApiError.BadRequest($"logit_bias: the bias of token {token} must be a number in [-100, 100]", "logit_bias");
            parsed[token] = bias.Value.GetDouble();
        }
        return parsed.Count > 0 ? parsed : null;
    }

    /// <summary><c>stream</c>, and <c>stream_options.include_usage</c>, which only a streamed answer may ask for.</summary>
    internal static (bool Stream, bool IncludeUsage) Streaming(JsonElement root)
    {
        bool stream = Boolean(root, "stream") ?? false;
        if (Field(root, "stream_options") is not { } options) return (stream, false);
        if (!stream) throw ApiError.BadRequest("stream_options is only allowed when stream is true", "stream_options");
        if (options.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("stream_options must be an object", "stream_options");
        return (stream, Boolean(options, "include_usage", "stream_options.") ?? false);
    }

    private static void RefuseUnsupported(JsonElement root, (string Field, string Neutral, Func<JsonElement, bool> IsNeutral)[] settings)
    {
        foreach (var (field, neutral, isNeutral) in settings)
            if (Field(root, field) is { } value && !isNeutral(value))
                throw ApiError.BadRequest($"{field} is not supported by this server (only {neutral})", field);
    }

    internal static bool? Boolean(JsonElement obj, string name, string prefix = "")
    {
        if (Field(obj, name) is not { } value) return null;
        return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean()
            : throw ApiError.BadRequest($"{prefix}{name} must be a boolean", prefix + name);
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
