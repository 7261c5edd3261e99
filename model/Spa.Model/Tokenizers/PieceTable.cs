using System.Globalization;
using System.Text;

namespace Spa.Model.Tokenizers;

/// <summary>The bytes each token stands for, and llama2.c's rule for joining them into text.</summary>
internal sealed class PieceTable(byte[][] bytes, int bosId)
{
    public int Count => bytes.Length;

    /// <summary>The bytes token <paramref name="id"/> adds to the text when it follows token <paramref name="prev"/> (-1: none).</summary>
    public ReadOnlySpan<byte> Bytes(int prev, int id)
    {
        if ((uint)id >= (uint)bytes.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token ids run from 0 to {bytes.Length - 1}");
        var piece = bytes[id].AsSpan();
        // Encoding puts a space before the text (the dummy prefix); run.c's decode drops it again after BOS.
        return prev == bosId && piece.Length > 0 && piece[0] == (byte)' ' ? piece[1..] : piece;
    }

    public string Decode(IEnumerable<int> ids)
    {
        var text = new List<byte>();
        var prev = -1;
        foreach (var id in ids)
        {
            text.AddRange(Bytes(prev, id));
            prev = id;
        }
        return Encoding.UTF8.GetString(text.ToArray());
    }

    /// <summary>Reads a SentencePiece byte-fallback piece such as <c>&lt;0x0A&gt;</c>, which stands for that single byte.</summary>
    public static bool TryParseByteToken(ReadOnlySpan<char> piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x") && piece[5] == '>'
            && byte.TryParse(piece[3..5], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
