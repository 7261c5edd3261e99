using System.Diagnostics;
using Spa.Testing;

namespace Spa.LoadTest.Tests;

/// <summary>
/// The real programs, run as separate processes from the repository root: spa-load, and spa (for a running cluster),
/// both in this project's output through the project reference.
/// </summary>
public static class SpaLoad
{
    public static string Dll { get; } = Path.Combine(AppContext.BaseDirectory, "spa-load.dll");

    public static string SpaDll { get; } = Path.Combine(AppContext.BaseDirectory, "spa.dll");

    /// <summary>Runs spa-load to its end (killed after <paramref name="timeout"/>) and returns the finished process.</summary>
    public static async Task<ChildProcess> RunAsync(TimeSpan timeout, params string[] args)
    {
        var process = Start(Dll, args);
        await process.WaitForExitAsync(timeout);
        return process;
    }

    /// <summary>
    /// Starts <paramref name="dll"/> with <paramref name="args"/> and <paramref name="environment"/> added to this
    /// process's; disposing the result kills it if it still runs.
    /// </summary>
    public static ChildProcess Start(string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        Assert.True(File.Exists(dll), $"{dll} is missing: the test project must reference clients/Spa.LoadTest");
        var host = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        var start = new ProcessStartInfo(host) { WorkingDirectory = SharedData.RepoRoot };
        start.ArgumentList.Add(dll);
        foreach (var arg in args) start.ArgumentList.Add(arg);
        start.Environment.Remove("SPA_DEBUG");
        start.Environment["OMP_NUM_THREADS"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (variable, value) in environment ?? new Dictionary<string, string?>()) start.Environment[variable] = value;
        return ChildProcess.Start(start);
    }
}
