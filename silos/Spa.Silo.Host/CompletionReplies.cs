using System.Text;
using Spa.Grains.Abstractions;
using Spa.Model.Tokenizers;

namespace Spa.Silo;

/// <summary>
/// One choice of a completion: its session's id, its prompt, the tokens before its first (<see cref="Context"/>: the
/// prompt, and for a resumed session the generated tokens the client has), its counters and its text.
/// </summary>
internal sealed class Choice(int index, string id, int[] promptTokens, int[] context)
{
    public int Index => index;
    public string Id => id;
    public int[] PromptTokens => promptTokens;
    public int[] Context => context;

    /// <summary>The prompt's text, sent before the completion when the request asked for <c>echo</c>; else empty.</summary>
    public string Echo { get; init; } = "";

    /// <summary>The whole text, for an answer that is not streamed.</summary>
    public StringBuilder Text { get; } = new();

    /// <summary>The tokens behind <see cref="Text"/> with where each one's piece starts in it, for its log-probabilities.</summary>
    public List<(TokenEvent Token, int Offset)> Tokens { get; } = [];

    /// <summary>A piece of text and the tokens that made it.</summary>
    public void Add(string piece, IReadOnlyList<TokenEvent> tokens)
    {
        foreach (var token in tokens) Tokens.Add((token, Text.Length));
        Text.Append(piece);
    }

    public int CompletionTokens { get; set; }

    /// <summary>Tokens the session sent, the end of sequence included.</summary>
    public int ReceivedTokens { get; set; }

    public string FinishReason { get; set; } = "length";

    /// <summary>The session's counters at the end; null when the session was deleted before it ended.</summary>
    public GenerationResult? Status { get; set; }

    /// <summary>
    /// The <c>spa</c> object: the session's id (for <c>/v1/sessions</c>) and counters, or, when the session is gone with
    /// them, what this completion received.
    /// </summary>
    public object Spa()
    {
        if (Status is not { } s) return new { session = Id, generated_tokens = ReceivedTokens };
        double perToken(double ms) => s.GeneratedTokens == 0 ? 0 : Math.Round(ms / s.GeneratedTokens, 4);
        return new
        {
            session = Id,
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
        };
    }
}

/// <summary>
/// OpenAI's two shapes of a choice: a completion's <c>text</c>, or a chat completion's <c>message</c> (whole) and
/// <c>delta</c> (streamed, opened by a delta that names the role, closed by an empty one with the finish reason); and
/// their two shapes of log-probabilities.
/// </summary>
internal sealed class ResponseShape
{
    public static readonly ResponseShape Text = new("text_completion", "text_completion", "text_completion", chat: false);
    public static readonly ResponseShape Chat = new("chat.completion", "chat.completion.chunk", "chat", chat: true);

    private readonly bool _chat;

    private ResponseShape(string whole, string chunk, string operation, bool chat) => (Object, ChunkObject, Operation, _chat) = (whole, chunk, operation, chat);

    public string Object { get; }
    public string ChunkObject { get; }

    /// <summary>The GenAI semantic conventions' <c>gen_ai.operation.name</c>.</summary>
    public string Operation { get; }

    /// <summary>Whether a streamed choice opens with a chunk of its own (the chat's role), even without echoed text.</summary>
    public bool OpensWithRole => _chat;

    public Dictionary<string, object?> Choice(int index, string text, string? finishReason, object? logprobs) => _chat
        ? new() { ["index"] = index, ["message"] = new { role = "assistant", content = text }, ["logprobs"] = logprobs, ["finish_reason"] = finishReason }
        : new() { ["text"] = text, ["index"] = index, ["logprobs"] = logprobs, ["finish_reason"] = finishReason };

    public Dictionary<string, object?> ChunkChoice(int index, string text, string? finishReason, bool opening, object? logprobs)
    {
        if (!_chat) return Choice(index, text, finishReason, logprobs);
        object delta = finishReason is not null ? new { } : opening ? new { role = "assistant", content = text } : new { content = text };
        return new() { ["index"] = index, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finishReason };
    }

    /// <summary>
    /// The log-probabilities of <paramref name="tokens"/> (each with where its piece starts in the text), or null when
    /// they were not asked for: a completion's <c>tokens</c>, <c>token_logprobs</c>, <c>top_logprobs</c> and
    /// <c>text_offset</c>, or a chat's <c>content</c> list. Tokens are named by their text, spaces as spaces.
    /// </summary>
    public object? Logprobs(IReadOnlyList<(TokenEvent Token, int Offset)> tokens, ITokenizer tokenizer)
    {
        if (tokens.Count == 0 || tokens[0].Token.Logprob is null) return null;
        if (_chat)
        {
            object Entry(int token, float logprob) => new { token = tokenizer.TokenText(token), logprob, bytes = Encoding.UTF8.GetBytes(tokenizer.TokenText(token)) };
            return new
            {
                content = tokens.Select(t => new
                {
                    token = tokenizer.TokenText(t.Token.Token),
                    logprob = t.Token.Logprob,
                    bytes = Encoding.UTF8.GetBytes(tokenizer.TokenText(t.Token.Token)),
                    top_logprobs = t.Token.TopLogprobs!.Select(a => Entry(a.Token, a.Logprob)),
                }),
                refusal = (object?)null,
            };
        }
        var offsets = new List<int>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
            offsets.Add(i > 0 && tokens[i].Offset == tokens[i - 1].Offset ? offsets[i - 1] + tokenizer.TokenText(tokens[i - 1].Token.Token).Length : tokens[i].Offset);
        return new
        {
            tokens = tokens.Select(t => tokenizer.TokenText(t.Token.Token)),
            token_logprobs = tokens.Select(t => t.Token.Logprob),
            top_logprobs = tokens.Select(t =>
            {
                var top = new Dictionary<string, float>();
                foreach (var alternative in t.Token.TopLogprobs!) top.TryAdd(tokenizer.TokenText(alternative.Token), alternative.Logprob);
                return top;
            }),
            text_offset = offsets,
        };
    }
}

/// <summary>
/// The bodies of one completion: the same <see cref="Id"/> and <see cref="Created"/> on every chunk; the whole answer;
/// each streamed piece, each choice's finish (with its session's <c>spa</c> counters), and, when
/// <see cref="IncludeUsage"/>, the usage in one more chunk with no choices, as OpenAI streams it.
/// </summary>
internal sealed record Reply(string Id, long Created, string Model, ResponseShape Shape, bool IncludeUsage, ITokenizer Tokenizer)
{
    /// <summary>
    /// The piece of a choice's text just added to it (<see cref="Choice.Add"/>) by its last <paramref name="tokens"/>
    /// tokens; <c>spa.edge</c> says whether the device took part in the last of them.
    /// </summary>
    public object Chunk(Choice choice, string text, int tokens, bool opening = false)
    {
        var made = choice.Tokens[^tokens..];
        return new
        {
            id = Id,
            @object = Shape.ChunkObject,
            created = Created,
            model = Model,
            choices = new[] { Shape.ChunkChoice(choice.Index, text, null, opening, Shape.Logprobs(made, Tokenizer)) },
            spa = made.Count > 0 ? new { edge = made[^1].Token.Edge, degraded = made[^1].Token.Degraded } : null,
        };
    }

    public object Finish(Choice choice) => new
    {
        id = Id,
        @object = Shape.ChunkObject,
        created = Created,
        model = Model,
        choices = new[] { Shape.ChunkChoice(choice.Index, "", choice.FinishReason, opening: false, logprobs: null) },
        spa = choice.Spa(),
    };

    public object Usage(IReadOnlyList<Choice> choices) => new
    {
        id = Id,
        @object = Shape.ChunkObject,
        created = Created,
        model = Model,
        choices = Array.Empty<object>(),
        usage = UsageOf(choices),
    };

    /// <summary>The answer that is not streamed: with one choice its <c>spa</c> counters at the top, with several in each choice.</summary>
    public object Whole(IReadOnlyList<Choice> choices)
    {
        var body = new Dictionary<string, object?>
        {
            ["id"] = Id,
            ["object"] = Shape.Object,
            ["created"] = Created,
            ["model"] = Model,
            ["choices"] = choices.Select(c =>
            {
                var shaped = Shape.Choice(c.Index, c.Text.ToString(), c.FinishReason, Shape.Logprobs(c.Tokens, Tokenizer));
                if (choices.Count > 1) shaped["spa"] = c.Spa();
                return shaped;
            }).ToList(),
            ["usage"] = UsageOf(choices),
        };
        if (choices.Count == 1) body["spa"] = choices[0].Spa();
        return body;
    }

    private static object UsageOf(IReadOnlyList<Choice> choices)
    {
        int prompt = choices.Sum(c => c.PromptTokens.Length), completion = choices.Sum(c => c.CompletionTokens);
        return new { prompt_tokens = prompt, completion_tokens = completion, total_tokens = prompt + completion };
    }
}
