using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;

namespace Spa.Testing;

/// <summary>
/// A network namespace joined to the host by a veth pair: the host end has <see cref="HostAddress"/>, the end inside
/// has <see cref="InsideAddress"/> (a private /30 of their own), and each end's egress goes through a <c>tbf</c> qdisc
/// at the link's rate for that direction. The delay is not the kernel's: <c>sch_netem</c> is missing from the kernels
/// we run on, so a <see cref="DelayingRelay"/> inside the namespace applies it.
/// Needs root and the <c>ip</c> and <c>tc</c> programs (iproute2); it throws, never skips, when they are missing.
/// Disposing deletes the namespace (and with it the inside end) and the host end.
/// </summary>
public sealed class NetworkNamespace : IDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);

    public string Name { get; }
    public IPAddress HostAddress { get; }
    public IPAddress InsideAddress { get; }

    private readonly string _hostEnd;
    private readonly string _insideEnd;

    private NetworkNamespace()
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        Name = "spa-" + id;
        _hostEnd = "spah" + id; // interface names have at most 15 characters
        _insideEnd = "spai" + id;
        var subnet = Random.Shared.Next(256);
        HostAddress = IPAddress.Parse($"10.213.{subnet}.1");
        InsideAddress = IPAddress.Parse($"10.213.{subnet}.2");
    }

    /// <summary>Creates the namespace, the veth pair and the shaping: <paramref name="toInsideMbps"/> from the host into
    /// the namespace, <paramref name="toHostMbps"/> back.</summary>
    public static NetworkNamespace Create(double toInsideMbps, double toHostMbps)
    {
        if (!Environment.IsPrivilegedProcess)
            throw new InvalidOperationException("creating a network namespace needs root: run the tests as root (CI does)");
        var ns = new NetworkNamespace();
        try
        {
            ns.Setup(toInsideMbps, toHostMbps);
            return ns;
        }
        catch
        {
            ns.Dispose();
            throw;
        }
    }

    private void Setup(double toInsideMbps, double toHostMbps)
    {
        Run("ip", "netns", "add", Name);
        Run("ip", "link", "add", _hostEnd, "type", "veth", "peer", "name", _insideEnd);
        Run("ip", "link", "set", _insideEnd, "netns", Name);
        Run("ip", "addr", "add", $"{HostAddress}/30", "dev", _hostEnd);
        Run("ip", "-n", Name, "addr", "add", $"{InsideAddress}/30", "dev", _insideEnd);
        Run("ip", "link", "set", _hostEnd, "up");
        Run("ip", "-n", Name, "link", "set", _insideEnd, "up");
        Run("ip", "-n", Name, "link", "set", "lo", "up");
        // A small burst (a few full frames) keeps the rate strict.
        Run(["tc", "qdisc", "add", "dev", _hostEnd, "root", .. Tbf(toInsideMbps)]);
        Run(["tc", "-n", Name, "qdisc", "add", "dev", _insideEnd, "root", .. Tbf(toHostMbps)]);
    }

    private static string[] Tbf(double mbps) =>
        ["tbf", "rate", (mbps * 1e6).ToString("0", CultureInfo.InvariantCulture) + "bit", "burst", "4500", "latency", "200ms"];

    /// <summary><paramref name="start"/> run inside the namespace (<c>ip netns exec</c>, which execs the program in place).</summary>
    public ProcessStartInfo Inside(ProcessStartInfo start)
    {
        var inside = new ProcessStartInfo("ip");
        foreach (var arg in (string[])["netns", "exec", Name, start.FileName, .. start.ArgumentList]) inside.ArgumentList.Add(arg);
        foreach (var (variable, value) in start.Environment) inside.Environment[variable] = value;
        return inside;
    }

    /// <summary>
    /// Runs <paramref name="create"/> with the calling thread's network namespace switched to this one (setns), on a
    /// thread of its own; a socket it makes stays in this namespace for its whole life, wherever it is used afterwards.
    /// </summary>
    public T Enter<T>(Func<T> create)
    {
        T? made = default;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var own = File.OpenHandle("/proc/thread-self/ns/net");
                using var target = File.OpenHandle($"/var/run/netns/{Name}");
                SetNamespace(target);
                try
                {
                    made = create();
                }
                finally
                {
                    SetNamespace(own);
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        return failure is null ? made! : throw new InvalidOperationException($"could not work inside network namespace {Name}: {failure.Message}", failure);
    }

    private static void SetNamespace(Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        const int newNetworkNamespace = 0x40000000; // CLONE_NEWNET
        if (setns((int)handle.DangerousGetHandle(), newNetworkNamespace) != 0)
            throw new InvalidOperationException($"setns failed with errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int setns(int fd, int nstype);

    public void Dispose()
    {
        TryRun("ip", "netns", "delete", Name);
        TryRun("ip", "link", "delete", _hostEnd); // normally gone with its peer; here for a pair made before the move failed
    }

    private static void Run(params string[] command)
    {
        var (exit, output) = Execute(command);
        if (exit != 0) throw new InvalidOperationException($"`{string.Join(" ", command)}` failed with exit code {exit}: {output.Trim()}");
    }

    private static bool TryRun(params string[] command) => Execute(command).Exit == 0;

    private static (int Exit, string Output) Execute(string[] command)
    {
        var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in command[1..]) start.ArgumentList.Add(arg);
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("could not start " + command[0]);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"`{command[0]}` is missing (install iproute2): {e.Message}", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(CommandTimeout))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"`{string.Join(" ", command)}` did not finish within {CommandTimeout.TotalSeconds} s");
            }
            return (process.ExitCode, stdout.Result + stderr.Result);
        }
    }
}
