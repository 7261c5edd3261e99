using System.Text;
using System.Text.Json;
using Spa.Model.Tokenizers;
using MlTokenizers = Microsoft.ML.Tokenizers;
using Spa.Testing;

namespace Spa.Model.Tests;

public sealed class TokenizerTests : IDisposable
{
    private static readonly Lazy<Llama2cTokenizer> Tok512 = new(() => Llama2cTokenizer.Load(SharedData.Tok512, 512));
    private static readonly Lazy<SentencePieceTokenizer> Llama2 = new(() => SentencePieceTokenizer.Load(SharedData.LlamaTokenizerModel));
    private static readonly Lazy<List<(string Source, string Text)>> TaskTexts = new(LoadTaskTexts);

    private readonly DirectoryInfo _temp = Directory.CreateTempSubdirectory("spa-tokenizer-tests-");

    public void Dispose() => _temp.Delete(recursive: true);

    public static TheoryData<string> TokenizerNames => new() { "tok512", "llama2" };

    private static ITokenizer Get(string name) => name == "tok512" ? Tok512.Value : Llama2.Value;

    [Fact]
    public void Tok512EncodesOnceUponATimeAsRunCDoes()
    {
        // From run.c's encode compiled with gcc: " Once", " upon", " a", " time" after BOS.
        var ids = Tok512.Value.Encode("Once upon a time", bos: true, eos: false);
        Assert.Equal([1, 403, 407, 261, 378], ids);
        Assert.Equal("Once upon a time", Tok512.Value.Decode(ids));
    }

    [Fact]
    public void Llama2TokenizerEncodesOnceUponATimeAsLlama2Does()
    {
        var ids = Llama2.Value.Encode("Once upon a time", bos: true, eos: false);
        Assert.Equal([1, 9038, 2501, 263, 931], ids);
        Assert.Equal("Once upon a time", Llama2.Value.Decode(ids));
    }

    /// <summary>
    /// Decode(Encode(text, bos: true, eos: true)) == text for every text field of the task files, and streaming the same
    /// ids gives the same text. The space encoding puts in front is dropped again after BOS.
    /// </summary>
    [Theory]
    [MemberData(nameof(TokenizerNames))]
    public void EveryTaskTextRoundTrips(string name)
    {
        var tokenizer = Get(name);
        var texts = TaskTexts.Value;
        Assert.True(texts.Count > 13_000, $"only {texts.Count} texts found under {SharedData.Tasks}");

        var failures = new List<string>();
        foreach (var (source, text) in texts)
        {
            var ids = tokenizer.Encode(text, bos: true, eos: true);
            var decoded = tokenizer.Decode(ids);
            if (decoded != text) failures.Add($"{source}: decodes to {Quote(decoded)} instead of {Quote(text)}");
            else if (StreamDecode(tokenizer, ids) != decoded) failures.Add($"{source}: streaming differs from the full decode");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {texts.Count} texts fail, e.g.\n{string.Join("\n", failures.Take(5))}");
    }

    [Theory]
    [MemberData(nameof(TokenizerNames))]
    public void UnusualTextsRoundTrip(string name)
    {
        var tokenizer = Get(name);
        string[] texts = ["", " ", " leading space", "  two leading spaces", "trailing  ", "\0nul\0", "\n", "tab\t cr\r\n",
            "<s>a literal BOS</s>", "<0x0A>", "<unk>", "\u00A0no-break space", "naïve café — 東京 🙂", "😀😀"];
        foreach (var text in texts)
        {
            var ids = tokenizer.Encode(text, bos: true, eos: false);
            Assert.Equal(text, tokenizer.Decode(ids));
            Assert.Equal(text, StreamDecode(tokenizer, ids));
        }
    }

    [Theory]
    [MemberData(nameof(TokenizerNames))]
    public void DecodeDropsTheDummyPrefixOnlyAfterBos(string name)
    {
        var tokenizer = Get(name);
        var withoutBos = tokenizer.Encode("Once upon", bos: false, eos: false);
        Assert.Equal(" Once upon", tokenizer.Decode(withoutBos));
        Assert.Equal(" Once upon", StreamDecode(tokenizer, withoutBos));

        var withBoth = tokenizer.Encode("Once upon", bos: true, eos: true);
        Assert.Equal(tokenizer.BosId, withBoth[0]);
        Assert.Equal(tokenizer.EosId, withBoth[^1]);
        Assert.Equal("Once upon", tokenizer.Decode(withBoth));
        Assert.Equal("", tokenizer.Decode([tokenizer.BosId, tokenizer.EosId]));
        Assert.Equal([tokenizer.BosId], tokenizer.Encode("", bos: true, eos: false));
    }

    [Theory]
    [MemberData(nameof(TokenizerNames))]
    public void StreamingHoldsBackCharactersSplitOverByteTokens(string name)
    {
        var tokenizer = Get(name);
        const string text = "naïve café — 東京 🙂";
        var ids = tokenizer.Encode(text, bos: true, eos: false);
        // tok512 lacks ï, 東, 京 and 🙂, LLaMA-2 lacks 🙂: they arrive as byte tokens 3..258.
        Assert.Contains(ids, id => id is >= 3 and <= 258);

        var decoder = tokenizer.CreateStreamDecoder();
        var pieces = ids.Select(decoder.Push).Append(decoder.Flush()).ToList();
        Assert.DoesNotContain(pieces, piece => piece.Contains('\uFFFD'));
        Assert.Contains(pieces, piece => piece.Contains("🙂"));
        Assert.Equal(text, string.Concat(pieces));
        Assert.Equal(tokenizer.Decode(ids), string.Concat(pieces));
    }

    [Theory]
    [MemberData(nameof(TokenizerNames))]
    public void AnUnfinishedCharacterDecodesAsAReplacementCharacter(string name)
    {
        var tokenizer = Get(name);
        // The first two bytes of "€" (E2 82 AC) without the third, at the end and before more text.
        int[] ids = [tokenizer.BosId, 3 + 0xE2, 3 + 0x82];
        Assert.Equal("\uFFFD", tokenizer.Decode(ids));
        var decoder = tokenizer.CreateStreamDecoder();
        Assert.All(ids, id => Assert.Equal("", decoder.Push(id)));
        Assert.Equal("\uFFFD", decoder.Flush());

        int[] followed = [.. ids, .. tokenizer.Encode("x", bos: false, eos: false)];
        Assert.Equal("\uFFFD x", tokenizer.Decode(followed));
        Assert.Equal("\uFFFD x", StreamDecode(tokenizer, followed));
    }

    [Fact]
    public void TokenTextShowsPieces()
    {
        Assert.Equal("<s>", Tok512.Value.TokenText(1));
        Assert.Equal("</s>", Tok512.Value.TokenText(2));
        Assert.Equal("<0x0A>", Tok512.Value.TokenText(13));
        Assert.Equal(" Once", Tok512.Value.TokenText(403));
        Assert.Equal("<s>", Llama2.Value.TokenText(1));
        Assert.Equal("<0x0A>", Llama2.Value.TokenText(13));
        Assert.Equal(" Once", Llama2.Value.TokenText(9038));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tok512.Value.TokenText(512));
    }

    /// <summary>The queue-based merge must reproduce run.c's quadratic merge loop exactly.</summary>
    [Fact]
    public void Tok512MatchesRunCMergeLoop()
    {
        var reference = new RunCEncoder(SharedData.Tok512, 512);
        var texts = TaskTexts.Value.Where(t => t.Source.StartsWith("sciq_test", StringComparison.Ordinal) || t.Source.Contains(" summary", StringComparison.Ordinal))
            .Select(t => t.Text)
            .Concat(TaskTexts.Value.Where(t => t.Source.Contains(" document", StringComparison.Ordinal)).Take(3).Select(t => t.Text))
            .Concat(["", " ", "  x", "naïve café — 東京 🙂", "a\0b", "aaaaaaaaaaaaaaaa", "the the the"])
            .ToList();
        Assert.True(texts.Count > 2000);
        foreach (var text in texts)
        {
            Assert.Equal(reference.Encode(text, bos: true), Tok512.Value.Encode(text, bos: true, eos: false));
            Assert.Equal(reference.Encode(text, bos: false), Tok512.Value.Encode(text, bos: false, eos: false));
        }
    }

    /// <summary>Our decoding follows the pieces; after BOS it must agree with the library's own decoder.</summary>
    [Fact]
    public void Llama2DecodeAgreesWithTheLibrary()
    {
        using var model = File.OpenRead(SharedData.LlamaTokenizerModel);
        var library = MlTokenizers.LlamaTokenizer.Create(model);
        foreach (var (source, text) in TaskTexts.Value.Where((_, i) => i % 10 == 0))
        {
            var ids = Llama2.Value.Encode(text, bos: true, eos: false);
            Assert.True(library.Decode(ids) == Llama2.Value.Decode(ids), $"{source}: {Quote(text)}");
        }
    }

    [Theory]
    [InlineData("random", "is not a llama2.c tokenizer file nor a SentencePiece model")]
    [InlineData("json", "is not a llama2.c tokenizer file nor a SentencePiece model")]
    [InlineData("protobuf-like", "could not be read as a SentencePiece model")]
    public void UnknownFormatsAreRejectedNamingTheFile(string kind, string complaint)
    {
        var path = Path.Combine(_temp.FullName, "tokenizer-" + kind);
        File.WriteAllBytes(path, kind switch
        {
            "random" => RandomBytes(1000, first: 0xF3),
            "json" => Encoding.UTF8.GetBytes("""{"vocab": {"a": 0, "b": 1}}"""),
            _ => RandomBytes(1000, first: 0x0A),
        });
        var e = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(path, 512));
        Assert.StartsWith($"{path} {complaint}", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedTok512IsRejected(bool atTokenBoundary)
    {
        var data = File.ReadAllBytes(SharedData.Tok512);
        // Header, then 300 tokens of (score, length, bytes).
        var boundary = 4;
        for (var i = 0; i < 300; i++) boundary += 8 + BitConverter.ToInt32(data, boundary + 4);
        var length = atTokenBoundary ? boundary : boundary + 6;
        var path = Path.Combine(_temp.FullName, "tok512.bin");
        File.WriteAllBytes(path, data[..length]);
        var direct = Assert.Throws<InvalidDataException>(() => Llama2cTokenizer.Load(path, 512));
        var detected = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(path, 512));
        Assert.Equal(direct.Message, detected.Message);
        Assert.Contains(path, direct.Message);
        Assert.Contains(atTokenBoundary ? "holds 300 tokens but the model's vocabulary has 512" : "is truncated: it ends inside token 300", direct.Message);
    }

    [Fact]
    public void Tok512WithAnExtraTokenIsRejected()
    {
        var path = Path.Combine(_temp.FullName, "tok512.bin");
        byte[] extra = [0, 0, 0, 0, 2, 0, 0, 0, (byte)'z', (byte)'z'];
        File.WriteAllBytes(path, [.. File.ReadAllBytes(SharedData.Tok512), .. extra]);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(path, 512));
        Assert.Contains($"{path} holds 513 tokens but the model's vocabulary has 512", e.Message);
    }

    [Fact]
    public void AVocabularySizeOtherThanTheModelsIsRejected()
    {
        var tooFew = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(SharedData.Tok512, 32000));
        Assert.Contains($"{SharedData.Tok512} holds 512 tokens but the model's vocabulary has 32000", tooFew.Message);
        var tooMany = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(SharedData.LlamaTokenizerModel, 512));
        Assert.Contains($"{SharedData.LlamaTokenizerModel} has 32000 tokens but the model's vocabulary has 512", tooMany.Message);
        var tooManyForATinyModel = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(SharedData.Tok512, 100));
        Assert.Contains($"{SharedData.Tok512} holds 512 tokens but the model's vocabulary has 100", tooManyForATinyModel.Message);
    }

    [Fact]
    public void LoaderFindsTokenizersByContentAndInDirectories()
    {
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(SharedData.Tok512, 512));
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(SharedData.Stories260K, 512));
        var llama = Assert.IsType<SentencePieceTokenizer>(TokenizerLoader.Load(Path.GetDirectoryName(SharedData.LlamaTokenizerModel)!, 32000));
        Assert.Equal((32000, 1, 2), (llama.VocabSize, llama.BosId, llama.EosId));

        // The name does not matter, the content does.
        var renamed = Path.Combine(_temp.FullName, "tokenizer.model");
        File.Copy(SharedData.Tok512, renamed);
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(renamed, 512));
    }

    [Fact]
    public void MissingTokenizerIsFileNotFound()
    {
        var missing = Path.Combine(_temp.FullName, "nothing-here.bin");
        var e = Assert.Throws<FileNotFoundException>(() => TokenizerLoader.Load(missing, 512));
        Assert.Contains(missing, e.Message);
        Assert.Throws<FileNotFoundException>(() => TokenizerLoader.Load(_temp.FullName, 512));
    }

    private static string StreamDecode(ITokenizer tokenizer, IEnumerable<int> ids)
    {
        var decoder = tokenizer.CreateStreamDecoder();
        var text = new StringBuilder();
        foreach (var id in ids) text.Append(decoder.Push(id));
        return text.Append(decoder.Flush()).ToString();
    }

    private static string Quote(string text) => JsonSerializer.Serialize(text.Length > 200 ? text[..200] + "..." : text);

    private static byte[] RandomBytes(int count, byte first)
    {
        var bytes = new byte[count];
        new Random(42).NextBytes(bytes);
        bytes[0] = first;
        return bytes;
    }

    /// <summary>The text fields of every .jsonl under the task folder (all strings inside them), named by file, line and field.</summary>
    private static List<(string Source, string Text)> LoadTaskTexts()
    {
        // Leaves out ids, urls and cnndm's pre-split copies of article and highlights.
        string[] textFields = ["document", "summary", "article", "highlights", "story", "history", "question", "answer"];
        var texts = new List<(string, string)>();
        foreach (var file in Directory.EnumerateFiles(SharedData.Tasks, "*.jsonl", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var line = 0;
            foreach (var json in File.ReadLines(file))
            {
                line++;
                using var row = JsonDocument.Parse(json);
                foreach (var field in row.RootElement.EnumerateObject().Where(f => textFields.Contains(f.Name)))
                    Collect(field.Value, $"{Path.GetFileName(file)}:{line} {field.Name}");
            }
        }
        return texts;

        void Collect(JsonElement element, string source)
        {
            if (element.ValueKind == JsonValueKind.String) texts.Add((source, element.GetString()!));
            else if (element.ValueKind == JsonValueKind.Array)
            {
                var index = 0;
                foreach (var item in element.EnumerateArray()) Collect(item, $"{source}[{index++}]");
            }
        }
    }

    /// <summary>An independent transcription of llama2.c run.c's build_tokenizer and encode, quadratic merge loop included.</summary>
    private sealed class RunCEncoder
    {
        private readonly string[] _vocab;
        private readonly float[] _scores;
        private readonly Dictionary<string, int> _sorted = new(StringComparer.Ordinal);

        public RunCEncoder(string path, int vocabSize)
        {
            using var reader = new BinaryReader(File.OpenRead(path));
            reader.ReadInt32(); // max_token_length
            _vocab = new string[vocabSize];
            _scores = new float[vocabSize];
            for (var i = 0; i < vocabSize; i++)
            {
                _scores[i] = reader.ReadSingle();
                _vocab[i] = Encoding.Latin1.GetString(reader.ReadBytes(reader.ReadInt32()));
                _sorted.TryAdd(_vocab[i], i);
            }
        }

        private int Lookup(string str) => _sorted.TryGetValue(str, out var id) ? id : -1;

        public List<int> Encode(string text, bool bos)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            var tokens = new List<int>();
            if (bos) tokens.Add(1);
            if (bytes.Length > 0) tokens.Add(Lookup(" "));
            var buffer = new StringBuilder();
            for (var c = 0; c < bytes.Length; c++)
            {
                if ((bytes[c] & 0xC0) != 0x80) buffer.Clear();
                buffer.Append((char)bytes[c]);
                if (c + 1 < bytes.Length && (bytes[c + 1] & 0xC0) == 0x80 && buffer.Length < 4) continue;
                var id = Lookup(buffer.ToString());
                if (id != -1) tokens.Add(id);
                else foreach (var b in buffer.ToString()) tokens.Add(b + 3);
                buffer.Clear();
            }
            while (true)
            {
                var bestScore = -1e10f;
                int bestId = -1, bestIdx = -1;
                for (var i = 0; i < tokens.Count - 1; i++)
                {
                    var id = Lookup(_vocab[tokens[i]] + _vocab[tokens[i + 1]]);
                    if (id != -1 && _scores[id] > bestScore)
                    {
                        bestScore = _scores[id];
                        bestId = id;
                        bestIdx = i;
                    }
                }
                if (bestIdx == -1) break;
                tokens[bestIdx] = bestId;
                tokens.RemoveAt(bestIdx + 1);
            }
            return tokens;
        }
    }
}
