using System.Diagnostics;

namespace Spa.CommandLine;

/// <summary>A single self-updating status line on stderr, redrawn at most a few times a second.</summary>
public sealed class ProgressLine : IDisposable
{
    private readonly Stopwatch _sinceDraw = Stopwatch.StartNew();
    private int _width;
    private bool _drawn;

    public void Update(string text, bool force = false)
    {
        if (!force && _drawn && _sinceDraw.ElapsedMilliseconds < 250) return;
        Console.Error.Write("\r" + text.PadRight(_width));
        _width = text.Length;
        _drawn = true;
        _sinceDraw.Restart();
    }

    public static string Bar(double fraction, int width = 24)
    {
        int filled = (int)Math.Round(Math.Clamp(fraction, 0, 1) * width);
        return "[" + new string('#', filled) + new string('.', width - filled) + "]";
    }

    public static string Duration(TimeSpan span) => span.TotalHours >= 1 ? span.ToString(@"h\:mm\:ss") : span.ToString(@"m\:ss");

    public void Dispose()
    {
        if (_drawn) Console.Error.WriteLine();
    }
}

/// <summary>Reports on the calling thread; Progress&lt;T&gt; would post to the thread pool and redraw out of order.</summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
