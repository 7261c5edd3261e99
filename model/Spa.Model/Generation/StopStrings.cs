namespace Spa.Model.Generation;

/// <summary>
/// Cuts streamed text at the first stop string. Text that could still turn into a stop string is held back until
/// the next piece decides it, so a caller never prints the beginning of a stop string.
/// </summary>
public sealed class StopStrings(IReadOnlyList<string> stops)
{
    private readonly string[] _stops = stops.Where(s => s.Length > 0).ToArray();
    private string _pending = "";

    public bool Stopped { get; private set; }

    /// <summary>Adds decoded text; returns the part that is now safe to emit.</summary>
    public string Push(string text)
    {
        if (Stopped) return "";
        _pending += text;
        int cut = _stops.Select(s => _pending.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        if (cut >= 0)
        {
            Stopped = true;
            var before = _pending[..cut];
            _pending = "";
            return before;
        }
        int hold = _stops.Select(LongestSuffixThatStarts).DefaultIfEmpty(0).Max();
        var ready = _pending[..^hold];
        _pending = _pending[^hold..];
        return ready;
    }

    /// <summary>The held-back text, once generation ended without a stop string.</summary>
    public string Flush()
    {
        var rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }

    private int LongestSuffixThatStarts(string stop)
    {
        for (int n = Math.Min(stop.Length - 1, _pending.Length); n > 0; n--)
            if (string.CompareOrdinal(_pending, _pending.Length - n, stop, 0, n) == 0) return n;
        return 0;
    }
}
