using System.Text;

namespace Spa.Model.Tokenizers;

/// <summary>
/// Turns token ids that arrive one at a time into text as soon as it is complete. A character spread over several
/// byte tokens is held back until its last byte arrives, so the concatenated output of <see cref="Push"/> and
/// <see cref="Flush"/> equals <see cref="ITokenizer.Decode"/> of the same ids.
/// </summary>
public sealed class TextStreamDecoder
{
    private readonly PieceTable _pieces;
    private readonly Decoder _utf8 = Encoding.UTF8.GetDecoder();
    private int _prev = -1;

    internal TextStreamDecoder(PieceTable pieces) => _pieces = pieces;

    /// <summary>Adds one token and returns the text it completes (possibly empty).</summary>
    public string Push(int id)
    {
        var bytes = _pieces.Bytes(_prev, id);
        _prev = id;
        return Convert(bytes, flush: false);
    }

    /// <summary>Ends the stream: bytes still waiting for the rest of their character come out as U+FFFD, as in a full decode.</summary>
    public string Flush() => Convert([], flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        var chars = new char[_utf8.GetCharCount(bytes, flush)];
        _utf8.GetChars(bytes, chars, flush);
        return new string(chars);
    }
}
