using System.Buffers.Binary;
using System.Text;

namespace Spa.Model.Tokenizers;

/// <summary>
/// The tokenizer of Karpathy's llama2.c (<c>tokenizer.bin</c>, <c>tok512.bin</c>): an int32 max token length, then
/// per token a float32 score, an int32 byte length and the bytes. The token count is not stored; it is the model's
/// vocabulary size. Encodes and decodes exactly as run.c does.
/// </summary>
public sealed class Llama2cTokenizer : ITokenizer
{
    // run.c hard-codes these: BOS 1, EOS 2, and byte b falls back to token b + 3.
    private const int Bos = 1;
    private const int Eos = 2;
    private const int FirstByteToken = 3;

    // run.c starts its search for the best merge at -1e10, so a merge scoring no better never happens.
    private const float MergeFloor = -1e10f;

    // Far above real token lengths (tok512: 7 bytes) yet small enough that the leading bytes of other
    // formats (a protobuf, JSON) read as an int32 fall outside it.
    private const int MaxTokenLengthLimit = 1 << 16;

    private readonly byte[][] _pieces;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<long, int> _merges = [];
    private readonly int[] _ranks;
    private readonly int _spaceId;
    private readonly PieceTable _decoding;

    private Llama2cTokenizer(byte[][] pieces, float[] scores, string name)
    {
        _pieces = pieces;

        // Keys hold one char per byte (Latin-1), so any byte string is a key and lookups are exact byte compares.
        // SentencePiece vocabularies have no duplicate pieces; should one, keep the lowest id (run.c's bsearch
        // would pick an arbitrary one).
        _ids = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        for (var id = 0; id < pieces.Length; id++) _ids.TryAdd(Encoding.Latin1.GetString(pieces[id]), id);

        if (pieces.Length < FirstByteToken + 256)
            throw new InvalidDataException($"{name} has only {pieces.Length} tokens; llama2.c's encoder needs bytes 0..255 at tokens 3..258");
        for (var b = 0; b < 256; b++)
        {
            var id = FirstByteToken + b;
            if (Encoding.Latin1.GetString(pieces[id]) != $"<0x{b:X2}>")
                throw new InvalidDataException($"{name}: token {id} should be the byte token <0x{b:X2}> but is \"{TokenText(id)}\"; llama2.c's encoder needs bytes 0..255 at tokens 3..258");
        }
        if (!_ids.TryGetValue(" ", out _spaceId))
            throw new InvalidDataException($"{name} has no \" \" token, which llama2.c's encoder puts before every text");

        // run.c merges a pair when the concatenation of their strings is a token. Every such pair is a split of
        // some token into two tokens, so list them all once instead of concatenating strings while encoding.
        var lookup = _ids.GetAlternateLookup<ReadOnlySpan<char>>();
        foreach (var (piece, merged) in _ids)
        {
            if (scores[merged] <= MergeFloor) continue;
            for (var split = 1; split < piece.Length; split++)
            {
                if (lookup.TryGetValue(piece.AsSpan(0, split), out var left) && lookup.TryGetValue(piece.AsSpan(split), out var right))
                    _merges[Pair(left, right)] = merged;
            }
        }

        // Merges only compare scores, so rank them: 0 for the best score, equal scores sharing a rank.
        var byScore = Enumerable.Range(0, pieces.Length).OrderByDescending(id => scores[id]).ToArray();
        _ranks = new int[pieces.Length];
        for (var i = 1; i < byScore.Length; i++)
            _ranks[byScore[i]] = _ranks[byScore[i - 1]] + (scores[byScore[i]] < scores[byScore[i - 1]] ? 1 : 0);

        var decoded = new byte[pieces.Length][];
        for (var id = 0; id < pieces.Length; id++)
        {
            decoded[id] = id is Bos or Eos ? []
                : PieceTable.TryParseByteToken(Encoding.Latin1.GetString(pieces[id]), out var b) ? [b]
                : pieces[id];
        }
        _decoding = new PieceTable(decoded, Bos);
    }

    public int VocabSize => _pieces.Length;
    public int BosId => Bos;
    public int EosId => Eos;

    /// <summary>Reads a llama2.c tokenizer file that must hold exactly <paramref name="vocabSize"/> tokens.</summary>
    public static Llama2cTokenizer Load(string path, int vocabSize) => Parse(File.ReadAllBytes(path), vocabSize, path);

    /// <summary>Whether <paramref name="data"/> starts like a llama2.c tokenizer file: a plausible max token length and a first token that fits it.</summary>
    internal static bool LooksLikeLlama2c(ReadOnlySpan<byte> data)
    {
        if (data.Length < 12) return false;
        var maxTokenLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        var score = BinaryPrimitives.ReadSingleLittleEndian(data[4..]);
        var length = BinaryPrimitives.ReadInt32LittleEndian(data[8..]);
        return maxTokenLength is > 0 and <= MaxTokenLengthLimit && !float.IsNaN(score) && length >= 0 && length <= maxTokenLength;
    }

    /// <summary>Parses a whole llama2.c tokenizer file; <paramref name="name"/> names it in error messages.</summary>
    internal static Llama2cTokenizer Parse(ReadOnlySpan<byte> data, int vocabSize, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        if (data.Length < 4) throw new InvalidDataException($"{name} is too short ({data.Length} bytes) to be a llama2.c tokenizer file");
        var maxTokenLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxTokenLength is <= 0 or > MaxTokenLengthLimit)
            throw new InvalidDataException($"{name} is not a llama2.c tokenizer file: its max token length would be {maxTokenLength}");

        // Walk the records to the end of the file, so that a wrong vocabulary size is reported as a count.
        var pieces = new List<byte[]>(vocabSize);
        var scores = new List<float>(vocabSize);
        var offset = 4;
        while (offset < data.Length)
        {
            var id = pieces.Count;
            if (data.Length - offset < 8) throw Truncated(name, id, vocabSize);
            var score = BinaryPrimitives.ReadSingleLittleEndian(data[offset..]);
            var length = BinaryPrimitives.ReadInt32LittleEndian(data[(offset + 4)..]);
            offset += 8;
            if (float.IsNaN(score)) throw new InvalidDataException($"{name} is not a valid llama2.c tokenizer file: token {id} has a NaN score");
            if (length < 0 || length > maxTokenLength)
                throw new InvalidDataException($"{name} is not a valid llama2.c tokenizer file: token {id} is {length} bytes long, but the max token length is {maxTokenLength}");
            if (data.Length - offset < length) throw Truncated(name, id, vocabSize);
            pieces.Add(data.Slice(offset, length).ToArray());
            scores.Add(score);
            offset += length;
        }
        if (pieces.Count != vocabSize)
            throw new InvalidDataException($"{name} holds {pieces.Count} tokens but the model's vocabulary has {vocabSize}: the file is truncated or belongs to another model");
        return new Llama2cTokenizer([.. pieces], [.. scores], name);
    }

    private static InvalidDataException Truncated(string name, int id, int vocabSize) =>
        new($"{name} is truncated: it ends inside token {id} (the model's vocabulary has {vocabSize} tokens)");

    /// <summary>run.c's encode: dummy prefix, one token per UTF-8 character (else its bytes), then best-score pair merges.</summary>
    public IReadOnlyList<int> Encode(string text, bool bos, bool eos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var utf8 = Encoding.UTF8.GetBytes(text);
        var ids = new List<int>(utf8.Length + 3);
        if (bos) ids.Add(Bos);
        if (utf8.Length > 0) ids.Add(_spaceId);

        var lookup = _ids.GetAlternateLookup<ReadOnlySpan<char>>();
        Span<char> character = stackalloc char[4];
        for (int start = 0, end; start < utf8.Length; start = end)
        {
            // run.c groups a byte with the continuation bytes after it, at most four in all: one code point.
            end = start + 1;
            while (end < utf8.Length && end - start < 4 && (utf8[end] & 0xC0) == 0x80) end++;
            var length = Encoding.Latin1.GetChars(utf8.AsSpan(start, end - start), character);
            if (lookup.TryGetValue(character[..length], out var id)) ids.Add(id);
            else for (var i = start; i < end; i++) ids.Add(FirstByteToken + utf8[i]);
        }

        // run.c merges whatever precedes, BOS included.
        Merge(ids);
        if (eos) ids.Add(Eos);
        return ids;
    }

    /// <summary>
    /// run.c's merge loop, which repeatedly merges the best-scoring adjacent pair (the leftmost among equals) until
    /// none is left, takes quadratic time. This gives the same result with a queue of candidate pairs over a linked
    /// list of tokens, keyed (rank of the merged token's score, position of the pair) so that the smallest key is
    /// run.c's choice.
    /// </summary>
    private void Merge(List<int> ids)
    {
        var n = ids.Count;
        var next = new int[n];
        var prev = new int[n];
        for (var i = 0; i < n; i++)
        {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }

        bool TryMerge(int left, out int merged)
        {
            merged = -1;
            var right = next[left];
            return right >= 0 && _merges.TryGetValue(Pair(ids[left], ids[right]), out merged);
        }
        long Key(int merged, int left) => (long)_ranks[merged] << 32 | (uint)left;

        var initial = new List<(int, long)>(n);
        for (var i = 0; i < n; i++)
        {
            if (TryMerge(i, out var merged)) initial.Add((i, Key(merged, i)));
        }
        var candidates = new PriorityQueue<int, long>(initial);

        while (candidates.TryDequeue(out var left, out var key))
        {
            // Earlier merges leave stale entries behind. The pair now at this position is still the one to merge
            // if it merges with the same rank: it has an entry of exactly this key, the smallest in the queue.
            if (ids[left] < 0 || !TryMerge(left, out var merged) || Key(merged, left) != key) continue;
            var right = next[left];
            ids[left] = merged;
            ids[right] = -1;
            next[left] = next[right];
            if (next[left] >= 0) prev[next[left]] = left;
            if (prev[left] >= 0 && TryMerge(prev[left], out var before)) candidates.Enqueue(prev[left], Key(before, prev[left]));
            if (TryMerge(left, out var after)) candidates.Enqueue(left, Key(after, left));
        }
        ids.RemoveAll(id => id < 0);
    }

    private static long Pair(int left, int right) => (long)left << 32 | (uint)right;

    public string Decode(IEnumerable<int> ids) => _decoding.Decode(ids);

    public TextStreamDecoder CreateStreamDecoder() => new(_decoding);

    public string TokenText(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, VocabSize);
        // llama2.c's export writes BOS and EOS as "\n<s>\n" and "\n</s>\n" so that run.c prints them on a line of their own.
        var text = Encoding.UTF8.GetString(_pieces[id]);
        return id is Bos or Eos ? text.Trim('\n') : text;
    }
}
