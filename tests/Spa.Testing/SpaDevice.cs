using System.Diagnostics;

namespace Spa.Testing;

/// <summary>
/// The real <c>spa-device</c> program, run from clients/Spa.Device's own output folder (built in the configuration of
/// the running tests), connected to a cluster's gateway. The secret goes through the environment, not the command line.
/// </summary>
public static class SpaDevice
{
    /// <summary>What spa-device prints once its observer is registered.</summary>
    public const string ConnectedLine = " connected to ";

    public static string Dll
    {
        get
        {
            var framework = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            var configuration = framework.Parent!.Name;
            for (var dir = framework; dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "SpaOrleans.sln")))
                    return Path.Combine(dir.FullName, "clients", "Spa.Device", "bin", configuration, framework.Name, "spa-device.dll");
            throw new DirectoryNotFoundException("could not find the repository root (SpaOrleans.sln) above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Starts spa-device; <paramref name="options"/> are further options such as <c>--profile</c> or <c>--tls-ca</c>.</summary>
    public static ChildProcess Start(string cluster, string deviceId, string secret, string pluginDirectory, double renewSeconds = 2,
        params string[] options) =>
        ChildProcess.Start(StartInfo(cluster, deviceId, secret, pluginDirectory, renewSeconds, options));

    /// <summary>How <see cref="Start"/> starts spa-device, for a caller that runs it elsewhere (in a network namespace).</summary>
    public static ProcessStartInfo StartInfo(string cluster, string deviceId, string secret, string pluginDirectory, double renewSeconds = 2,
        params string[] options)
    {
        var dll = Dll;
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll} is missing: build clients/Spa.Device (the test project references it)");
        var host = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        var start = new ProcessStartInfo(host);
        string[] arguments = [dll, "--cluster", cluster, "--device-id", deviceId, "--plugin", pluginDirectory, "--renew-seconds", renewSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), .. options];
        foreach (var arg in arguments) start.ArgumentList.Add(arg);
        start.Environment["SPA_DEVICE_SECRET"] = secret;
        start.Environment["OMP_NUM_THREADS"] = "1";
        start.Environment.Remove("SPA_DEBUG");
        return start;
    }
}
