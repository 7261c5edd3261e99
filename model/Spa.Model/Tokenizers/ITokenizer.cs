namespace Spa.Model.Tokenizers;

/// <summary>
/// A LLaMA-family tokenizer. Encoding puts a space in front of non-empty text (SentencePiece's dummy prefix), so
/// decoding follows llama2.c's run.c: a token right after BOS drops its leading space, BOS and EOS decode to nothing,
/// and byte tokens <c>&lt;0xNN&gt;</c> contribute raw bytes that are joined into UTF-8 before becoming text.
/// Hence <c>Decode(Encode(text, bos: true, eos))</c> gives back <c>text</c> exactly; without BOS the decoded text
/// starts with the extra space.
/// </summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int BosId { get; }
    int EosId { get; }

    IReadOnlyList<int> Encode(string text, bool bos, bool eos);

    string Decode(IEnumerable<int> ids);

    /// <summary>The token's piece for display: spaces as ' ', byte tokens as <c>&lt;0xNN&gt;</c>, BOS as <c>&lt;s&gt;</c>.</summary>
    string TokenText(int id);

    /// <summary>A decoder for ids that arrive one at a time; push every id from the start of the sequence, BOS included.</summary>
    TextStreamDecoder CreateStreamDecoder();
}
