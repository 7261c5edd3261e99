using System.Text;
using System.Text.Json;
using Spa.Model.Tokenizers;

namespace Spa.Silo;

/// <summary>One message of a chat request: its role (system, user or assistant) and its text.</summary>
public sealed record ChatMessage(string Role, string Content)
{
    private static readonly string[] Roles = ["system", "developer", "user", "assistant"];

    /// <summary>
    /// The request's <c>messages</c>: each a role and a content that is a string or an array of text parts. Tool and
    /// function messages, and parts other than text, are refused. Their text together is bounded by
    /// <paramref name="maxBytes"/>, as a completion's prompt is, before anything is tokenized.
    /// </summary>
    public static IReadOnlyList<ChatMessage> ParseAll(JsonElement messages, long maxBytes)
    {
        var parsed = new List<ChatMessage>();
        long bytes = 0;
        foreach (var (message, i) in messages.EnumerateArray().Select((m, i) => (m, i)))
        {
            var at = $"messages[{i}]";
            if (message.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest($"{at} must be an object with role and content", at);
            var role = CompletionRequest.Text(message, "role", at + ".") ?? throw ApiError.BadRequest($"{at}.role is required", at + ".role");
            if (!Roles.Contains(role))
                throw ApiError.BadRequest($"{at}.role '{role}' is not served: use system, user or assistant (tools and functions are not supported)", at + ".role");
            var content = TextOf(CompletionRequest.Field(message, "content"), at);
            bytes += Encoding.UTF8.GetByteCount(content);
            if (bytes > maxBytes) throw ApiError.BadRequest($"the messages hold more than {maxBytes} bytes of text, more than the model's context can take", "messages");
            parsed.Add(new ChatMessage(role == "developer" ? "system" : role, content));
        }
        return parsed;
    }

    private static string TextOf(JsonElement? content, string at)
    {
        if (content is not { } c) throw ApiError.BadRequest($"{at}.content is required", at + ".content");
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw ApiError.BadRequest($"{at}.content must be a string or an array of text parts", at + ".content");
        var text = new StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || CompletionRequest.Text(part, "type", at + ".content.") != "text")
                throw ApiError.BadRequest($"{at}.content: only text parts are served (no images, audio or files)", at + ".content");
            text.Append(CompletionRequest.Text(part, "text", at + ".content.") ?? "");
        }
        return text.ToString();
    }
}

/// <summary>
/// How a chat's messages become the prompt's tokens. <see cref="Plain"/>: the messages' text, one per line, for base
/// models that were never tuned to chat (the llama2.c story models); <see cref="Llama2"/>: LLaMA-2 chat's format as
/// llama2.c's <c>run.c</c> renders it, each turn <c>[INST] (&lt;&lt;SYS&gt;&gt; system &lt;&lt;/SYS&gt;&gt;) user [/INST]</c>
/// after a BOS token and each answer followed by EOS. <see cref="None"/>: the model has no chat template we can run,
/// and a chat request is refused with <see cref="Unavailable"/>.
/// </summary>
public sealed class ChatTemplate
{
    public const string PlainName = "plain";
    public const string Llama2Name = "llama-2";

    public static readonly ChatTemplate Plain = new(PlainName, null);
    public static readonly ChatTemplate Llama2 = new(Llama2Name, null);

    private ChatTemplate(string name, string? unavailable) => (Name, Unavailable) = (name, unavailable);

    public string Name { get; }

    /// <summary>Why chat cannot be served with this model; null when it can.</summary>
    public string? Unavailable { get; }

    public static ChatTemplate None(string reason) => new("none", reason);

    /// <summary>
    /// The template of <c>--chat-template</c> (a name, or a file: a Hugging Face <c>tokenizer_config.json</c> or the
    /// template's own text), else the checkpoint's own: a Hugging Face directory's <c>tokenizer_config.json</c>
    /// <c>chat_template</c>, else, for a llama2.c checkpoint, <see cref="Plain"/>. Hugging Face templates are Jinja,
    /// which this server does not run: LLaMA-2's (it holds <c>[INST]</c> and <c>&lt;&lt;SYS&gt;&gt;</c>) is recognised and
    /// rendered by <see cref="Llama2"/>; any other is refused when given on the command line and makes chat unavailable
    /// when it comes with the checkpoint.
    /// </summary>
    public static ChatTemplate Resolve(string? option, string modelPath)
    {
        if (option is not null)
        {
            if (option is PlainName) return Plain;
            if (option is Llama2Name) return Llama2;
            if (!File.Exists(option)) throw new ArgumentException($"--chat-template: '{option}' is neither {PlainName}, {Llama2Name} nor a file");
            var text = File.ReadAllText(option);
            var template = option.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? FromConfig(text, option) : text;
            return template is not null && IsLlama2(template) ? Llama2
                : throw new ArgumentException($"--chat-template: {option} holds {(template is null ? "no chat_template" : "a Jinja template other than LLaMA-2's")}, " +
                    $"which this server cannot run; use {PlainName} or {Llama2Name}");
        }
        var config = Path.Combine(Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath))!, "tokenizer_config.json");
        if (!File.Exists(config))
            return Directory.Exists(modelPath) && File.Exists(Path.Combine(modelPath, "config.json"))
                ? None("the model has no chat template (no tokenizer_config.json); start the server with --chat-template plain or llama-2")
                : Plain;
        return FromConfig(File.ReadAllText(config), config) switch
        {
            null => None("the model has no chat template (tokenizer_config.json has no chat_template); start the server with --chat-template plain or llama-2"),
            var template when IsLlama2(template) => Llama2,
            _ => None("the model's chat template is a Jinja template other than LLaMA-2's, which this server cannot run; start the server with --chat-template plain or llama-2"),
        };
    }

    private static string? FromConfig(string json, string path)
    {
        try
        {
            using var config = JsonDocument.Parse(json);
            return config.RootElement.TryGetProperty("chat_template", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{path} is not JSON: {e.Message}");
        }
    }

    private static bool IsLlama2(string template) =>
        template.Contains("[INST]", StringComparison.Ordinal) && template.Contains("<<SYS>>", StringComparison.Ordinal);

    /// <summary>The prompt's tokens for <paramref name="messages"/>; throws <see cref="ApiError"/> for a conversation the format cannot hold.</summary>
    public IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, ITokenizer tokenizer)
    {
        if (Unavailable is not null) throw ApiError.BadRequest(Unavailable, "messages");
        if (this == Plain) return tokenizer.Encode(string.Join("\n", messages.Select(m => m.Content)), bos: true, eos: false);

        string? system = messages[0].Role == "system" ? messages[0].Content : null;
        var turns = messages.Skip(system is null ? 0 : 1).ToList();
        for (int i = 0; i < turns.Count; i++)
            if (turns[i].Role != (i % 2 == 0 ? "user" : "assistant"))
                throw ApiError.BadRequest("LLaMA-2's chat format needs an optional system message first, then user and assistant messages in turn, ending with a user message", "messages");
        if (turns.Count % 2 == 0) throw ApiError.BadRequest("the last message must be the user's: LLaMA-2's chat format answers a user message", "messages");
        var tokens = new List<int>();
        for (int i = 0; i < turns.Count; i += 2)
        {
            var user = i == 0 && system is not null ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{turns[i].Content}" : turns[i].Content;
            tokens.AddRange(tokenizer.Encode($"[INST] {user} [/INST]", bos: true, eos: false));
            if (i + 1 < turns.Count) tokens.AddRange(tokenizer.Encode(turns[i + 1].Content.Trim(), bos: false, eos: true));
        }
        return tokens;
    }
}
