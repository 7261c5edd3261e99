using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Spa.Testing;

/// <summary>
/// A program a test runs beside itself (a server): its output is collected as it comes, it can be stopped as an
/// operator stops it (SIGTERM), and disposing kills it with its children if it still runs, so no test leaves one behind.
/// </summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private const int Sigterm = 15;

    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    public string CommandLine { get; }

    private ChildProcess(Process process, string commandLine)
    {
        _process = process;
        CommandLine = commandLine;
    }

    /// <summary>Starts <paramref name="start"/> with stdout and stderr collected and stdin closed.</summary>
    public static ChildProcess Start(ProcessStartInfo start)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.RedirectStandardInput = true;
        start.UseShellExecute = false;
        start.StandardOutputEncoding = Encoding.UTF8;
        start.StandardErrorEncoding = Encoding.UTF8;
        var process = new Process { StartInfo = start };
        var child = new ChildProcess(process, string.Join(" ", [start.FileName, .. start.ArgumentList]));
        process.OutputDataReceived += (_, e) => child.Append(child._stdout, e.Data);
        process.ErrorDataReceived += (_, e) => child.Append(child._stderr, e.Data);
        if (!process.Start()) throw new InvalidOperationException("could not start " + child.CommandLine);
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public string Stdout
    {
        get { lock (_stdout) return _stdout.ToString(); }
    }

    public string Stderr
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    /// <summary>Waits for the exit; on <paramref name="timeout"/> kills the process and throws <see cref="TimeoutException"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            await KillAsync();
            throw new TimeoutException($"did not exit within {timeout.TotalSeconds} s and was killed\n{this}");
        }
        return _process.ExitCode;
    }

    /// <summary>Sends SIGTERM and waits for the exit as <see cref="WaitForExitAsync"/> does.</summary>
    public Task<int> TerminateAsync(TimeSpan timeout)
    {
        if (!_process.HasExited && Kill(_process.Id, Sigterm) != 0)
            throw new InvalidOperationException($"could not send SIGTERM to {_process.Id} (errno {Marshal.GetLastPInvokeError()})");
        return WaitForExitAsync(timeout);
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }

    /// <summary>Waits until <paramref name="text"/> appears in stdout; fails with the output when the program exits first or time runs out.</summary>
    public Task WaitForOutputAsync(string text, TimeSpan timeout) =>
        Eventually.True(() =>
        {
            if (Stdout.Contains(text, StringComparison.Ordinal) || Stderr.Contains(text, StringComparison.Ordinal)) return true;
            if (_process.HasExited) throw new InvalidOperationException($"exited with {_process.ExitCode} before printing '{text}'\n{this}");
            return false;
        }, timeout, $"'{text}' in the output", context: ToString);

    public override string ToString() => $"$ {CommandLine}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";

    /// <summary>SIGKILL (with its children): the program vanishes without a word, as a crashed machine does.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    private void Append(StringBuilder output, string? line)
    {
        if (line is null) return;
        lock (output) output.Append(line).Append('\n');
    }

    // Process.Kill sends SIGKILL only; a clean stop is what is tested, and that needs SIGTERM.
    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
