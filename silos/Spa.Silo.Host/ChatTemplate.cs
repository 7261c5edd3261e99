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
/// after a BOS token and each answer followed by EOS; a Hugging Face template: its Jinja, run by
/// <see cref="JinjaTemplate"/> as <c>transformers</c>' <c>apply_chat_template</c> runs it (with
/// <c>add_generation_prompt</c>), its text then tokenized with the BOS and EOS strings as those tokens. A template
/// that cannot run leaves the model without chat: <see cref="Unavailable"/> says why.
/// </summary>
public sealed class ChatTemplate
{
    public const string PlainName = "plain";
    public const string Llama2Name = "llama-2";

    public static readonly ChatTemplate Plain = new(PlainName);
    public static readonly ChatTemplate Llama2 = new(Llama2Name);

    private readonly JinjaTemplate? _jinja;
    private readonly string? _bos, _eos;

    private ChatTemplate(string name, string? unavailable = null, JinjaTemplate? jinja = null, string? bos = null, string? eos = null) =>
        (Name, Unavailable, _jinja, _bos, _eos) = (name, unavailable, jinja, bos, eos);

    public string Name { get; }

    /// <summary>Why chat cannot be served with this model; null when it can.</summary>
    public string? Unavailable { get; }

    public static ChatTemplate None(string reason) => new("none", reason);

    /// <summary>
    /// The template of <c>--chat-template</c> (a name, or a file: a Hugging Face <c>tokenizer_config.json</c> or the
    /// template's own Jinja), else the checkpoint's own: a Hugging Face directory's <c>tokenizer_config.json</c>
    /// <c>chat_template</c>, else, for a llama2.c checkpoint, <see cref="Plain"/>. A template that does not parse is
    /// refused when given on the command line and makes chat unavailable when it comes with the checkpoint.
    /// </summary>
    public static ChatTemplate Resolve(string? option, string modelPath)
    {
        const string Choose = "start the server with --chat-template plain, llama-2 or a file";
        if (option is not null)
        {
            if (option is PlainName) return Plain;
            if (option is Llama2Name) return Llama2;
            if (!File.Exists(option)) throw new ArgumentException($"--chat-template: '{option}' is neither {PlainName}, {Llama2Name} nor a file");
            var text = File.ReadAllText(option);
            var (template, bos, eos) = option.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? FromConfig(text, option) : (text, null, null);
            if (template is null) throw new ArgumentException($"--chat-template: {option} has no chat_template");
            try
            {
                return Jinja(option, template, bos, eos);
            }
            catch (FormatException e)
            {
                throw new ArgumentException($"--chat-template: {option} is a template this server cannot run ({e.Message})");
            }
        }
        var config = Path.Combine(Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath))!, "tokenizer_config.json");
        if (!File.Exists(config))
            return Directory.Exists(modelPath) && File.Exists(Path.Combine(modelPath, "config.json"))
                ? None($"the model has no chat template (no tokenizer_config.json); {Choose}")
                : Plain;
        var (own, ownBos, ownEos) = FromConfig(File.ReadAllText(config), config);
        if (own is null) return None($"the model has no chat template (tokenizer_config.json has no chat_template); {Choose}");
        try
        {
            return Jinja(config, own, ownBos, ownEos);
        }
        catch (FormatException e)
        {
            return None($"the model's chat template uses what this server cannot run ({e.Message}); {Choose}");
        }
    }

    private static ChatTemplate Jinja(string source, string template, string? bos, string? eos) =>
        new($"jinja from {source}", jinja: JinjaTemplate.Parse(template), bos: bos, eos: eos);

    /// <summary>A tokenizer_config.json's chat template (a string, or the "default" of a list of named ones) and its BOS and EOS strings.</summary>
    private static (string? Template, string? Bos, string? Eos) FromConfig(string json, string path)
    {
        try
        {
            using var config = JsonDocument.Parse(json);
            var root = config.RootElement;
            string? Special(string name) => root.TryGetProperty(name, out var t)
                ? t.ValueKind == JsonValueKind.String ? t.GetString() : t.ValueKind == JsonValueKind.Object && t.TryGetProperty("content", out var c) ? c.GetString() : null
                : null;
            string? template = !root.TryGetProperty("chat_template", out var ct) ? null
                : ct.ValueKind == JsonValueKind.String ? ct.GetString()
                : ct.ValueKind == JsonValueKind.Array
                    ? ct.EnumerateArray().Where(t => t.TryGetProperty("name", out var n) && n.GetString() == "default").Select(t => t.GetProperty("template").GetString()).FirstOrDefault()
                    : null;
            return (template, Special("bos_token"), Special("eos_token"));
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{path} is not JSON: {e.Message}");
        }
    }

    /// <summary>The prompt's tokens for <paramref name="messages"/>; throws <see cref="ApiError"/> for a conversation the format cannot hold.</summary>
    public IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, ITokenizer tokenizer)
    {
        if (Unavailable is not null) throw ApiError.BadRequest(Unavailable, "messages");
        if (this == Plain) return tokenizer.Encode(string.Join("\n", messages.Select(m => m.Content)), bos: true, eos: false);
        if (_jinja is not null) return RenderJinja(messages, tokenizer);

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

    /// <summary>
    /// Renders the Jinja template and tokenizes its text: the BOS and EOS strings become those tokens, the text between
    /// them is encoded as it stands (as <c>apply_chat_template</c> tokenizes, adding no special tokens of its own).
    /// </summary>
    private List<int> RenderJinja(IReadOnlyList<ChatMessage> messages, ITokenizer tokenizer)
    {
        string bos = _bos ?? tokenizer.TokenText(tokenizer.BosId), eos = _eos ?? tokenizer.TokenText(tokenizer.EosId);
        string text;
        try
        {
            text = _jinja!.Render(new Dictionary<string, object?>
            {
                ["messages"] = messages.Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
                ["add_generation_prompt"] = true,
                ["bos_token"] = bos,
                ["eos_token"] = eos,
            });
        }
        catch (TemplateException e)
        {
            throw ApiError.BadRequest($"the model's chat template refused the messages: {e.Message}", "messages");
        }
        var tokens = new List<int>();
        int at = 0;
        while (at < text.Length)
        {
            int nextBos = text.IndexOf(bos, at, StringComparison.Ordinal), nextEos = text.IndexOf(eos, at, StringComparison.Ordinal);
            int next = nextBos < 0 ? nextEos : nextEos < 0 ? nextBos : Math.Min(nextBos, nextEos);
            var segment = next < 0 ? text[at..] : text[at..next];
            if (segment.Length > 0) tokens.AddRange(tokenizer.Encode(segment, bos: false, eos: false));
            if (next < 0) break;
            bool isBos = next == nextBos;
            tokens.Add(isBos ? tokenizer.BosId : tokenizer.EosId);
            at = next + (isBos ? bos.Length : eos.Length);
        }
        return tokens;
    }
}
