using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spa.Model.Generation;
using Spa.Model.Sampling;
using Spa.Model.Tokenizers;

namespace Spa.Model.Tasks;

/// <summary>A range of characters [Start, End) of a text.</summary>
public readonly record struct CharSpan(int Start, int End)
{
    public int Length => End - Start;

    public bool Overlaps(int start, int end) => start < End && Start < end;
}

/// <summary>
/// One story of a user's corpus: <see cref="Text"/> with its characters renamed to the user's private names.
/// <see cref="BaseNames"/> are the names the base model wrote, in order of first appearance; <c>BaseNames[i]</c>
/// became <c>Names[i % Names.Count]</c>. <see cref="Names"/> are the private names the story uses, in the same order,
/// and <see cref="PrivateSpans"/> every place one of them stands in the text, in text order.
/// </summary>
public sealed record PersonalStory(string Text, IReadOnlyList<string> Names, IReadOnlyList<string> BaseNames, IReadOnlyList<CharSpan> PrivateSpans);

/// <summary>
/// The personalisation task: stories sampled from the base model whose characters carry the user's private names,
/// which the base cannot know, so predicting them is what the user's side network is for. Written as JSON Lines,
/// one story per line, <c>{"text", "names", "base_names", "private_spans": [[start, end], ...]}</c> (character offsets
/// into text, end exclusive); the generic <c>jsonl</c> task reads the same file as plain <c>{"text"}</c> rows.
/// </summary>
public static partial class PersonalCorpus
{
    // Attempts sampled together in one batch: a fixed number, so that the same seed gives the same corpus.
    private const int AttemptsPerBatch = 16;

    private static readonly JsonSerializerOptions Json = new()
    {
        // The file is data, never HTML: keep apostrophes and non-ASCII letters readable instead of \u escapes.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Samples stories from <paramref name="model"/> until <paramref name="count"/> of them name a character, and
    /// personalises each (<see cref="Personalise"/>). Each attempt starts from BOS alone and samples with temperature
    /// 1 and top-p 0.9, seeded from <paramref name="seed"/> and the attempt's number; attempts are sampled in
    /// batches of a fixed size (the last smaller when it reaches the attempts' limit), so the same arguments give the
    /// same corpus. <paramref name="progress"/> receives the number of stories made so far.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model wrote too few stories with names: after
    /// <c>3 * count + 20</c> attempts it is not a TinyStories-style model.</exception>
    public static IReadOnlyList<PersonalStory> Generate(LlamaModel model, ITokenizer tokenizer, IReadOnlyList<string> privateNames,
        int count, int seed, int maxTokens = 200, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        CheckNames(privateNames);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTokens);
        var generator = new Generator(model);
        var maxAttempts = 3 * count + 20;
        var stories = new List<PersonalStory>(count);
        IReadOnlyList<int> bos = [tokenizer.BosId];
        for (int attempt = 0; stories.Count < count; attempt += AttemptsPerBatch)
        {
            if (attempt >= maxAttempts)
                throw new InvalidOperationException(
                    $"only {stories.Count} of {maxAttempts} sampled stories named a character (a capitalised name); the personal corpus needs a model that writes TinyStories-style stories");
            var sampling = Enumerable.Range(attempt, Math.Min(AttemptsPerBatch, maxAttempts - attempt))
                .Select(a => new SamplingOptions { Temperature = 1.0, TopP = 0.9, Seed = AttemptSeed(seed, a) }).ToArray();
            var sampled = generator.DecodeBatch(sampling.Select(_ => bos).ToArray(), maxTokens, sampling, cancellation);
            foreach (var tokens in sampled)
            {
                var text = tokenizer.Decode([.. bos, .. tokens.Where(t => !generator.IsEndOfSequence(t))]);
                if (stories.Count == count || Personalise(text, privateNames) is not { } story) continue;
                stories.Add(story);
                progress?.Report(stories.Count);
            }
        }
        return stories;
    }

    /// <summary>
    /// The tokens of <paramref name="text"/> as a model reads it (BOS, then the text) and, for each position t, whether
    /// the token there is private: whether its characters overlap one of <paramref name="spans"/>. Under teacher
    /// forcing the model predicts <c>tokens[t]</c> from <c>tokens[..t]</c>, so a marked t is a private target; BOS is
    /// never one.
    /// </summary>
    public static (int[] Tokens, bool[] IsPrivateTarget) PrivatePositions(ITokenizer tokenizer, string text, IReadOnlyList<CharSpan> spans)
    {
        var (tokens, ranges) = TokenRanges(tokenizer, text);
        var isPrivate = new bool[tokens.Length];
        for (var t = 1; t < tokens.Length; t++) isPrivate[t] = spans.Any(s => s.Overlaps(ranges[t].Start, ranges[t].End));
        return (tokens, isPrivate);
    }

    /// <summary>
    /// Where each private name of <paramref name="text"/> stands in its tokens (BOS, then the text): for every span, in
    /// text order, the first token that overlaps it and how many tokens do.
    /// </summary>
    public static (int[] Tokens, IReadOnlyList<(int First, int Count)> Names) NameTokens(ITokenizer tokenizer, string text, IReadOnlyList<CharSpan> spans)
    {
        var (tokens, ranges) = TokenRanges(tokenizer, text);
        var names = new List<(int, int)>();
        foreach (var span in spans)
        {
            var covering = Enumerable.Range(1, tokens.Length - 1).Where(t => span.Overlaps(ranges[t].Start, ranges[t].End)).ToArray();
            if (covering.Length > 0) names.Add((covering[0], covering.Length));
        }
        return (tokens, names);
    }

    // The characters of the text that each token stands for, found by decoding the tokens one after another: after BOS
    // the decoder drops the dummy-prefix space just as encoding added it, so the decoded prefix is exactly a prefix of
    // the text. A byte token that completes no character on its own belongs to the character it helps complete.
    private static (int[] Tokens, CharSpan[] Ranges) TokenRanges(ITokenizer tokenizer, string text)
    {
        var tokens = tokenizer.Encode(text, bos: true, eos: false).ToArray();
        var ranges = new CharSpan[tokens.Length];
        var decoder = tokenizer.CreateStreamDecoder();
        var decoded = new StringBuilder(text.Length);
        for (var t = 0; t < tokens.Length; t++)
        {
            int start = decoded.Length;
            decoded.Append(decoder.Push(tokens[t]));
            ranges[t] = new CharSpan(start, decoded.Length);
        }
        decoded.Append(decoder.Flush());
        if (decoded.ToString() != text)
            throw new ArgumentException("the text does not decode back to itself with this tokenizer, so its tokens have no character offsets", nameof(text));
        for (var t = tokens.Length - 2; t >= 1; t--)
        {
            if (ranges[t].Length == 0) ranges[t] = ranges[t + 1];
        }
        return (tokens, ranges);
    }

    /// <summary>Writes <paramref name="stories"/> as JSON Lines, one story per line.</summary>
    public static void Write(TextWriter writer, IEnumerable<PersonalStory> stories)
    {
        foreach (var story in stories)
        {
            var row = new Row(story.Text, story.Names, story.BaseNames, story.PrivateSpans.Select(s => new[] { s.Start, s.End }).ToArray());
            writer.Write(JsonSerializer.Serialize(row, Json));
            writer.Write('\n');
        }
    }

    /// <summary>
    /// Reads a corpus written by <see cref="Write"/>. A malformed line is an <see cref="InvalidDataException"/> whose
    /// message starts with "FILE:LINE:", as for every task file; so is a span that lies outside its text or does not
    /// hold one of the story's names.
    /// </summary>
    public static IReadOnlyList<PersonalStory> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"personal corpus {path} does not exist", path);
        var stories = new List<PersonalStory>();
        var line = 0;
        foreach (var json in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(json)) continue;
            try
            {
                stories.Add(Parse(json));
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"{path}:{line}: {e.Message}", e);
            }
        }
        return stories;
    }

    private static PersonalStory Parse(string json)
    {
        JsonElement row;
        try
        {
            row = JsonSerializer.Deserialize<JsonElement>(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"not valid JSON: {e.Message}", e);
        }
        if (row.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"expected a JSON object, found {row.ValueKind.ToString().ToLowerInvariant()}");
        var text = Field(row, "text", JsonValueKind.String).GetString()!;
        var names = Strings(row, "names");
        var baseNames = Strings(row, "base_names");
        var spans = new List<CharSpan>();
        foreach (var pair in Field(row, "private_spans", JsonValueKind.Array).EnumerateArray())
        {
            if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2
                || !pair[0].TryGetInt32(out var start) || !pair[1].TryGetInt32(out var end) || start < 0 || end <= start || end > text.Length)
                throw new InvalidDataException($"private span {pair.GetRawText()} is not a [start, end] pair of offsets inside the text of {text.Length} characters");
            var held = text[start..end];
            if (!names.Contains(held))
                throw new InvalidDataException($"private span [{start}, {end}] holds \"{held}\", which is not one of the story's names");
            spans.Add(new CharSpan(start, end));
        }
        return new PersonalStory(text, names, baseNames, spans);
    }

    private static JsonElement Field(JsonElement row, string name, JsonValueKind kind)
    {
        if (!row.TryGetProperty(name, out var value)) throw new InvalidDataException($"missing field \"{name}\"");
        return value.ValueKind == kind ? value
            : throw new InvalidDataException($"field \"{name}\" must be {(kind == JsonValueKind.String ? "a string" : "an array")}, not {value.ValueKind.ToString().ToLowerInvariant()}");
    }

    private static string[] Strings(JsonElement row, string name)
    {
        var items = Field(row, name, JsonValueKind.Array).EnumerateArray().ToArray();
        return items.All(item => item.ValueKind == JsonValueKind.String) ? items.Select(item => item.GetString()!).ToArray()
            : throw new InvalidDataException($"field \"{name}\" must be an array of strings");
    }

    /// <summary>SplitMix64 of the seed and attempt number: nearby seeds and attempts get unrelated sampling seeds.</summary>
    private static ulong AttemptSeed(int seed, int attempt)
    {
        var z = ((ulong)(uint)seed << 32 | (uint)attempt) + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private sealed record Row(
        [property: JsonPropertyName("text")] string Text,
        [property: JsonPropertyName("names")] IReadOnlyList<string> Names,
        [property: JsonPropertyName("base_names")] IReadOnlyList<string> BaseNames,
        [property: JsonPropertyName("private_spans")] int[][] PrivateSpans);
}
