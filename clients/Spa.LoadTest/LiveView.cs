using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;
using Spa.Grains.Abstractions;

namespace Spa.LoadTest;

/// <summary>
/// Live progress on stderr while a run goes: the mode running, its requests, tokens/s over the last seconds, per-token
/// latency and time to first token percentiles, errors and M (measured requests only), and what was done before. On a
/// terminal it redraws a table twice a second (Spectre.Console); when stderr is not a terminal it prints a line every
/// five seconds instead.
/// </summary>
public sealed class LiveView : IAsyncDisposable
{
    private readonly IAnsiConsole _console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
    private readonly Func<(ModeRecorder Recorder, Stopwatch Clock)?> _current;
    private readonly LoadSettings _settings;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly List<string[]> _finished = [];
    private volatile string _status = "starting";

    public LiveView(Func<(ModeRecorder Recorder, Stopwatch Clock)?> current, LoadSettings settings)
    {
        _current = current;
        _settings = settings;
        _loop = _console.Profile.Capabilities.Interactive && !Console.IsErrorRedirected ? Live() : Lines();
    }

    /// <summary>What the run does when it is not measuring (starting the cluster, registering devices, ...).</summary>
    public string Status
    {
        set => _status = value;
    }

    public void Finished(ModeFigures figures)
    {
        lock (_finished)
            _finished.Add(Row(figures.Mode, "done", figures.Requests, figures.TokensPerS, figures.TokenLatencyMs.P50, figures.TokenLatencyMs.P95,
                figures.TokenLatencyMs.P99, figures.TtftMs.P50, figures.TtftMs.P95, figures.Errors, figures.M));
    }

    private static readonly string[] Header = ["mode", "time", "requests", "tokens/s", "token p50 ms", "p95", "p99", "TTFT p50 ms", "p95", "errors", "M"];

    private async Task Live()
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var column in Header) table.AddColumn(new TableColumn(column).RightAligned());
        await _console.Live(table).AutoClear(false).StartAsync(async context =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Fill(table);
                context.Refresh();
                try
                {
                    await Task.Delay(500, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
            Fill(table);
            context.Refresh();
        });
    }

    private void Fill(Table table)
    {
        table.Rows.Clear();
        lock (_finished)
            foreach (var row in _finished) table.AddRow(row.Select(cell => (IRenderable)new Text(cell)).ToArray());
        var current = Now();
        if (current is not null) table.AddRow(current.Select(cell => (IRenderable)new Text(cell)).ToArray());
        table.Caption($"{_settings.Shape}: {_status}");
    }

    private async Task Lines()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(5000, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var row = Now();
            Console.Error.WriteLine(row is null ? $"spa-load: {_status}" : "spa-load: " + string.Join(", ", Header.Zip(row, (h, v) => $"{h} {v}")));
        }
    }

    /// <summary>The running mode's figures so far, or null between modes.</summary>
    private string[]? Now()
    {
        if (_current() is not var (recorder, clock)) return null;
        double elapsed = clock.Elapsed.TotalSeconds;
        var measured = recorder.Measured;
        var done = measured.Where(s => s.Error is null).ToList();
        var latencies = Percentiles.Sorted(done.SelectMany(s => s.TokenMs));
        var firsts = Percentiles.Sorted(done.Where(s => s.Tokens > 0).Select(s => s.TokenMs[0]));
        int second = (int)elapsed, window = Math.Min(3, second);
        double rate = window > 0 ? recorder.TokensBetween(second - window, second) / (double)window : 0;
        double m = done.Sum(s => s.Status!.GeneratedTokens) is var tokens and > 0 ? done.Sum(s => s.Status!.Edge.Transmissions) / (double)tokens : double.NaN;
        string phase = elapsed < _settings.WarmupSeconds ? "warm-up" : $"{elapsed - _settings.WarmupSeconds:0}/{_settings.DurationSeconds:0} s";
        return Row(recorder.Mode, phase, measured.Count, rate, Percentiles.Of(latencies, 50), Percentiles.Of(latencies, 95), Percentiles.Of(latencies, 99),
            Percentiles.Of(firsts, 50), Percentiles.Of(firsts, 95), measured.Count - done.Count, m);
    }

    private static string[] Row(SessionMode mode, string phase, int requests, double rate, double p50, double p95, double p99, double ttft50, double ttft95, int errors, double m) =>
        [WireNames.Of(mode), phase, requests.ToString("N0", CultureInfo.InvariantCulture), F(rate), F(p50), F(p95), F(p99), F(ttft50), F(ttft95),
            errors.ToString("N0", CultureInfo.InvariantCulture), double.IsFinite(m) ? m.ToString("0.###", CultureInfo.InvariantCulture) : "-"];

    private static string F(double value) => double.IsFinite(value) ? value.ToString("#,0.0", CultureInfo.InvariantCulture) : "-";

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}
