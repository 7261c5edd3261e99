using System.Diagnostics;

namespace Spa.LoadTest;

/// <summary>
/// The fleet as separate <c>spa-device</c> processes (the program beside spa-load), each an Orleans client of the
/// cluster over its own TCP connection to the gateway, holding one device's plugin. Started again with the plugin of
/// each new kind a mode needs; disposing kills whatever still runs. <paramref name="tlsCa"/>: the processes connect
/// over TLS, trusting the certificates in that file (spa-device's <c>--tls-ca</c>).
/// </summary>
public sealed class DeviceProcesses(string gateway, string? tlsCa) : IAsyncDisposable
{
    /// <summary>More processes than this would measure the machine's memory rather than the cluster.</summary>
    public const int MaxDevices = 32;

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(90);
    private readonly Dictionary<string, Process> _running = [];

    public static string Program { get; } = Path.Combine(AppContext.BaseDirectory, "spa-device.dll");

    /// <summary>Replaces the running processes with one per device with the plugin in <paramref name="pluginDirectory"/>, and waits until every one has connected.</summary>
    public async Task Start(IReadOnlyList<FleetDevice> devices, string pluginDirectory, Action<int> progress, CancellationToken cancellation)
    {
        await Stop();
        await Launch(devices, pluginDirectory, progress, cancellation);
    }

    /// <summary>Starts one process per device beside those running, and waits until every one has connected.</summary>
    public async Task Launch(IReadOnlyList<FleetDevice> devices, string pluginDirectory, Action<int> progress, CancellationToken cancellation)
    {
        if (!File.Exists(Program)) throw new FileNotFoundException($"spa-device is missing: expected {Program}");
        int connected = 0;
        var waits = devices.Select(device =>
        {
            var connectedLine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var errors = new System.Text.StringBuilder();
            var start = new ProcessStartInfo(DotnetHost())
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            // spa-device runs on spa-load's runtime configuration and dependencies: beside spa-load, whose silo host
            // brings the ASP.NET Core framework, the hosting assemblies spa-device's own configuration expects in its
            // folder are not there, but that framework holds them.
            foreach (var arg in new[] { "exec", "--runtimeconfig", Path.Combine(AppContext.BaseDirectory, "spa-load.runtimeconfig.json"),
                "--depsfile", Path.Combine(AppContext.BaseDirectory, "spa-load.deps.json"), Program,
                "--cluster", gateway, "--device-id", device.Id, "--plugin", pluginDirectory })
                start.ArgumentList.Add(arg);
            if (tlsCa is not null) foreach (var arg in new[] { "--tls-ca", tlsCa }) start.ArgumentList.Add(arg);
            start.Environment["SPA_DEVICE_SECRET"] = device.Secret; // not on the command line, where other users could read it
            start.Environment["OMP_NUM_THREADS"] = "1";
            var process = new Process { StartInfo = start, EnableRaisingEvents = true };
            process.OutputDataReceived += (_, e) =>
            {
                if (e.Data?.Contains(" connected to ", StringComparison.Ordinal) == true && connectedLine.TrySetResult()) progress(Interlocked.Increment(ref connected));
            };
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null) lock (errors) errors.AppendLine(e.Data);
            };
            process.Exited += (_, _) =>
            {
                lock (errors) connectedLine.TrySetException(new InvalidOperationException($"spa-device {device.Id} exited: {errors.ToString().Trim()}"));
            };
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            lock (_running) _running[device.Id] = process;
            return connectedLine.Task.WaitAsync(ConnectTimeout, cancellation);
        }).ToList();
        await Task.WhenAll(waits);
    }

    /// <summary>SIGKILLs the processes of the devices <paramref name="deviceIds"/>, as a phone that dies or loses its app does.</summary>
    public async Task Kill(IEnumerable<string> deviceIds)
    {
        foreach (var id in deviceIds)
        {
            Process? process;
            lock (_running) _running.Remove(id, out process);
            if (process is not null) await End(process);
        }
    }

    public async Task Stop()
    {
        List<Process> running;
        lock (_running)
        {
            running = [.. _running.Values];
            _running.Clear();
        }
        foreach (var process in running) await End(process);
    }

    private static async Task End(Process process)
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
        process.Dispose();
    }

    public async ValueTask DisposeAsync() => await Stop();

    /// <summary>The dotnet host running spa-load when it runs under one, else dotnet on PATH.</summary>
    private static string DotnetHost() =>
        Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
}
