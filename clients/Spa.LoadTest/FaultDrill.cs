using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Spa.CommandLine;

namespace Spa.LoadTest;

public enum FaultAction
{
    /// <summary>SIGKILL a process (a silo): it vanishes as a crashed machine does.</summary>
    Kill,

    /// <summary>SIGSTOP a process for a while, then SIGCONT: a silo that hangs (a long pause, a frozen VM) and comes back.</summary>
    Stop,

    /// <summary>SIGKILL some of spa-load's own device processes, and start them again after a while if asked.</summary>
    KillDevices,

    /// <summary>Run a shell command: the same drill against a deployment (<c>kubectl delete pod ...</c>).</summary>
    Exec,
}

/// <summary>
/// One fault of a drill, as <c>--fault</c> gives it: <c>ACTION:TARGET@SECONDS[+SECONDS]</c>, fired
/// <see cref="AtSeconds"/> after the measured window opens, lasting <see cref="ForSeconds"/> where the action has a length.
/// </summary>
public sealed record Fault(FaultAction Action, string Target, double AtSeconds, double? ForSeconds)
{
    public const string Syntax = "kill:PID@SECONDS, stop:PID@SECONDS+SECONDS, kill-devices:COUNT@SECONDS[+SECONDS], exec:COMMAND@SECONDS";

    private static readonly Dictionary<string, FaultAction> Actions = new()
    {
        ["kill"] = FaultAction.Kill,
        ["stop"] = FaultAction.Stop,
        ["kill-devices"] = FaultAction.KillDevices,
        ["exec"] = FaultAction.Exec,
    };

    /// <summary>The process id of a kill or stop, or the device count of kill-devices.</summary>
    public int Number => int.Parse(Target, CultureInfo.InvariantCulture);

    public static Fault Parse(string text)
    {
        int colon = text.IndexOf(':'), at = text.LastIndexOf('@');
        if (colon <= 0 || at < colon) throw Invalid(text, "expected ACTION:TARGET@SECONDS[+SECONDS]");
        if (!Actions.TryGetValue(text[..colon], out var action)) throw Invalid(text, $"unknown action '{text[..colon]}'");
        string target = text[(colon + 1)..at];
        var times = text[(at + 1)..].Split('+');
        if (times.Length > 2) throw Invalid(text, "give one start time and at most one length");
        double start = Seconds(text, times[0]);
        double? length = times.Length == 2 ? Seconds(text, times[1]) : null;
        if (length is <= 0) throw Invalid(text, "a length must be positive");
        switch (action)
        {
            case FaultAction.Kill or FaultAction.Stop or FaultAction.KillDevices:
                if (!int.TryParse(target, NumberStyles.None, CultureInfo.InvariantCulture, out int number) || number <= 0)
                    throw Invalid(text, action == FaultAction.KillDevices ? $"'{target}' is not a device count" : $"'{target}' is not a process id");
                break;
            case FaultAction.Exec when target.Trim().Length == 0:
                throw Invalid(text, "the command is empty");
        }
        if (action == FaultAction.Stop && length is null) throw Invalid(text, "stop needs a length: stop:PID@SECONDS+SECONDS");
        if (action is FaultAction.Kill or FaultAction.Exec && length is not null) throw Invalid(text, $"{text[..colon]} has no length");
        return new Fault(action, target, start, length);
    }

    public override string ToString() =>
        $"{Actions.First(a => a.Value == Action).Key}:{Target}@{AtSeconds.ToString(CultureInfo.InvariantCulture)}" +
        (ForSeconds is { } length ? "+" + length.ToString(CultureInfo.InvariantCulture) : "");

    private static double Seconds(string text, string value)
    {
        var number = value.EndsWith('s') ? value[..^1] : value;
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) || !(seconds >= 0 && seconds <= 86400))
            throw Invalid(text, $"'{value}' is not a time in seconds");
        return seconds;
    }

    private static UsageException Invalid(string text, string reason) => new($"--fault '{text}': {reason}; the forms are {Syntax}");
}

/// <summary>What firing a fault did: when (Stopwatch timestamp and seconds into the measured window) and how it went.</summary>
public sealed record FiredFault(Fault Fault, long Timestamp, double AtSeconds, string Outcome);

/// <summary>
/// Fires a drill's faults on a mode's clock, each in its own task, and ends every fault that lasts (a stopped process
/// is continued, killed devices started again) by the time <see cref="Run"/> returns, even when the mode ended first.
/// The devices are spa-load's own processes, reached through <paramref name="killDevices"/> (which returns the ids it
/// killed) and <paramref name="restartDevices"/>.
/// </summary>
public sealed class FaultDrill(IReadOnlyList<Fault> faults, Func<int, Task<IReadOnlyList<string>>> killDevices,
    Func<IReadOnlyList<string>, Task> restartDevices, Action<string> log)
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(120);
    private readonly List<FiredFault> _fired = [];

    public IReadOnlyList<Fault> Faults => faults;

    public IReadOnlyList<FiredFault> Fired
    {
        get
        {
            lock (_fired) return [.. _fired.OrderBy(f => f.Timestamp)];
        }
    }

    /// <summary>Refuses, before the run, a process fault whose process does not exist (or is spa-load itself).</summary>
    public static void CheckTargets(IEnumerable<Fault> faults)
    {
        foreach (var fault in faults.Where(f => f.Action is FaultAction.Kill or FaultAction.Stop))
        {
            if (fault.Number == Environment.ProcessId) throw new UsageException($"--fault {fault}: {fault.Number} is spa-load itself");
            if (Signal(fault.Number, 0) != 0) throw new UsageException($"--fault {fault}: there is no process {fault.Number} that spa-load may signal");
        }
    }

    /// <summary>
    /// Fires each fault <see cref="Fault.AtSeconds"/> after <paramref name="windowOpens"/> seconds of <paramref name="clock"/>;
    /// a fault still waiting when <paramref name="modeEnded"/> fires is recorded as not fired.
    /// </summary>
    public Task Run(Stopwatch clock, double windowOpens, CancellationToken modeEnded) =>
        Task.WhenAll(faults.Select(fault => Task.Run(async () =>
        {
            var due = TimeSpan.FromSeconds(windowOpens + fault.AtSeconds) - clock.Elapsed;
            try
            {
                if (due > TimeSpan.Zero) await Task.Delay(due, modeEnded);
            }
            catch (OperationCanceledException)
            {
                Record(fault, clock, windowOpens, $"not fired: the mode ended {clock.Elapsed.TotalSeconds - windowOpens:F1} s into the window");
                return;
            }
            await Fire(fault, clock, windowOpens, modeEnded);
        }, CancellationToken.None)));

    private async Task Fire(Fault fault, Stopwatch clock, double windowOpens, CancellationToken modeEnded)
    {
        switch (fault.Action)
        {
            case FaultAction.Kill:
                Record(fault, clock, windowOpens, SignalOutcome(fault.Number, SigKill, "SIGKILL"));
                break;
            case FaultAction.Stop:
                var stopped = SignalOutcome(fault.Number, SigStop, "SIGSTOP");
                Record(fault, clock, windowOpens, stopped);
                await LastFor(fault, modeEnded);
                log($"{fault}: {SignalOutcome(fault.Number, SigCont, "SIGCONT")} after {fault.ForSeconds:0.##} s");
                break;
            case FaultAction.KillDevices:
                var killed = await killDevices(fault.Number);
                Record(fault, clock, windowOpens, $"killed {killed.Count} device processes: {string.Join(", ", killed)}");
                if (fault.ForSeconds is null || killed.Count == 0) break;
                await LastFor(fault, modeEnded);
                await restartDevices(killed);
                log($"{fault}: {killed.Count} device processes started again and connected");
                break;
            case FaultAction.Exec:
                long timestamp = Stopwatch.GetTimestamp();
                double at = clock.Elapsed.TotalSeconds - windowOpens;
                log($"{fault}: running at {at:F2} s");
                Record(fault, timestamp, at, await Execute(fault.Target));
                break;
        }
    }

    private static async Task LastFor(Fault fault, CancellationToken modeEnded)
    {
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(fault.ForSeconds!.Value), modeEnded);
        }
        catch (OperationCanceledException)
        {
            // The mode is over: the fault ends now rather than leave a process stopped or devices missing.
        }
    }

    private void Record(Fault fault, Stopwatch clock, double windowOpens, string outcome) =>
        Record(fault, Stopwatch.GetTimestamp(), clock.Elapsed.TotalSeconds - windowOpens, outcome);

    private void Record(Fault fault, long timestamp, double at, string outcome)
    {
        lock (_fired) _fired.Add(new FiredFault(fault, timestamp, at, outcome));
        log($"{fault}: {outcome} at {at:F2} s");
    }

    /// <summary>Runs <paramref name="command"/> with /bin/sh and tells its exit code and the last line it wrote to stderr.</summary>
    private static async Task<string> Execute(string command)
    {
        var start = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(CommandTimeout);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            return $"killed after {CommandTimeout.TotalSeconds:0} s without exiting";
        }
        await output;
        var last = (await errors).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        return $"exit {process.ExitCode}" + (last is null ? "" : $" ({last})");
    }

    private const int SigKill = 9, SigCont = 18, SigStop = 19;

    private static string SignalOutcome(int pid, int signal, string name) =>
        Signal(pid, signal) == 0 ? $"{name} sent to {pid}" : $"{name} to {pid} failed (errno {Marshal.GetLastPInvokeError()})";

    // Process.Kill sends only SIGKILL; stopping and continuing a process needs kill(2) itself.
    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Signal(int pid, int signal);
}
