using System.Diagnostics;
using System.Text;
using Spa.Model.Tests;

namespace Spa.Silo.Tests;

/// <summary>
/// A real <c>spa-device</c> process (spa-device.dll from clients/Spa.Device's output, same configuration) connected
/// to a cluster's gateway; killed on dispose. Its output is collected for the failure messages.
/// </summary>
public sealed class DeviceProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public DeviceProcess(int gatewayPort, string deviceId, string secret, string pluginDirectory)
    {
        var dll = Dll;
        Assert.True(File.Exists(dll), $"{dll} is missing: build clients/Spa.Device (the test project references it)");
        var start = new ProcessStartInfo(Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { dll, "--cluster", $"127.0.0.1:{gatewayPort}", "--device-id", deviceId, "--plugin", pluginDirectory, "--renew-seconds", "2" })
            start.ArgumentList.Add(arg);
        start.Environment["SPA_DEVICE_SECRET"] = secret; // not on the command line, where other users could read it
        start.Environment["OMP_NUM_THREADS"] = "1";
        _process = Process.Start(start) ?? throw new InvalidOperationException("could not start spa-device");
        _process.OutputDataReceived += (_, e) => Collect(e.Data);
        _process.ErrorDataReceived += (_, e) => Collect(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Id => _process.Id;

    /// <summary>clients/Spa.Device/bin/{configuration}/{framework}/spa-device.dll, for the configuration these tests were built in.</summary>
    public static string Dll
    {
        get
        {
            var framework = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            var configuration = framework.Parent!;
            return Path.Combine(SharedData.RepoRoot, "clients", "Spa.Device", "bin", configuration.Name, framework.Name, "spa-device.dll");
        }
    }

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>Waits for the process to say it is connected; fails with its output when it exits or takes too long.</summary>
    public async Task WaitConnected(TimeSpan timeout)
    {
        var exited = _process.WaitForExitAsync();
        var first = await Task.WhenAny(_connected.Task, exited, Task.Delay(timeout));
        Assert.True(first == _connected.Task, $"spa-device did not connect within {timeout.TotalSeconds} s:\n{Output}");
    }

    /// <summary>SIGKILL: the device vanishes without a word to the cluster.</summary>
    public void Kill()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    private void Collect(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
        if (line.Contains(" connected to ", StringComparison.Ordinal)) _connected.TrySetResult();
    }
}
