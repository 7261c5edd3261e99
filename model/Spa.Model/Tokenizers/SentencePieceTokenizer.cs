using System.Text;
using Microsoft.ML.Tokenizers;

namespace Spa.Model.Tokenizers;

/// <summary>
/// A SentencePiece BPE model (<c>tokenizer.model</c> of LLaMA checkpoints), encoded by Microsoft.ML.Tokenizers.
/// Decoding goes through the pieces instead of the library because the library drops the leading space of the first
/// token whether or not BOS precedes it, while llama2.c (and <see cref="ITokenizer"/>) drop it only after BOS; a
/// stream decoder that starts mid-text must keep that space.
/// </summary>
public sealed class SentencePieceTokenizer : ITokenizer
{
    private readonly LlamaTokenizer _tokenizer;
    private readonly string[] _texts;
    private readonly PieceTable _decoding;

    private SentencePieceTokenizer(LlamaTokenizer tokenizer, string name)
    {
        _tokenizer = tokenizer;
        if (!tokenizer.AddDummyPrefix || !tokenizer.EscapeWhiteSpaces || tokenizer.TreatWhitespaceAsSuffix)
            throw new InvalidDataException($"{name} does not use LLaMA's whitespace conventions (a dummy prefix, spaces written as ▁ in front of pieces)");

        _texts = new string[tokenizer.Vocabulary.Count];
        foreach (var (piece, id) in tokenizer.Vocabulary)
        {
            if ((uint)id >= (uint)_texts.Length || _texts[id] != null)
                throw new InvalidDataException($"{name}: the ids of its {_texts.Length} pieces do not run from 0 to {_texts.Length - 1}");
            _texts[id] = piece.Replace('▁', ' ');
        }

        var decoded = new byte[_texts.Length][];
        for (var id = 0; id < _texts.Length; id++)
        {
            decoded[id] = id == BosId || id == EosId ? []
                : tokenizer.ByteFallback && PieceTable.TryParseByteToken(_texts[id], out var b) ? [b]
                : Encoding.UTF8.GetBytes(_texts[id]);
        }
        _decoding = new PieceTable(decoded, BosId);
    }

    public int VocabSize => _texts.Length;
    public int BosId => _tokenizer.BeginningOfSentenceId;
    public int EosId => _tokenizer.EndOfSentenceId;

    public static SentencePieceTokenizer Load(string path) => Parse(File.ReadAllBytes(path), path);

    /// <summary>Parses a serialized SentencePiece model; <paramref name="name"/> names it in error messages.</summary>
    internal static SentencePieceTokenizer Parse(byte[] model, string name)
    {
        LlamaTokenizer tokenizer;
        try
        {
            tokenizer = LlamaTokenizer.Create(new MemoryStream(model, writable: false), addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e)
        {
            // The library reports a malformed model with whatever its parser hits: protobuf errors, or a
            // NullReferenceException for an empty one.
            throw new InvalidDataException($"{name} could not be read as a SentencePiece model: {e.Message}", e);
        }
        return new SentencePieceTokenizer(tokenizer, name);
    }

    public IReadOnlyList<int> Encode(string text, bool bos, bool eos)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length > 0) return _tokenizer.EncodeToIds(text, bos, eos);
        // For empty text the library returns no ids at all, not even the BOS asked for.
        var ids = new List<int>(2);
        if (bos) ids.Add(BosId);
        if (eos) ids.Add(EosId);
        return ids;
    }

    public string Decode(IEnumerable<int> ids) => _decoding.Decode(ids);

    public TextStreamDecoder CreateStreamDecoder() => new(_decoding);

    public string TokenText(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, VocabSize);
        return _texts[id];
    }
}
