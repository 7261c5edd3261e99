using System.Diagnostics;
using Spa.Model.Tests;
using Spa.Testing;

namespace Spa.LoadTest.Tests;

/// <summary>The real spa-load program (spa-load.dll in this project's output) run as a separate process from the repository root.</summary>
public static class SpaLoad
{
    public static string Dll { get; } = Path.Combine(AppContext.BaseDirectory, "spa-load.dll");

    /// <summary>Runs spa-load to its end (killed after <paramref name="timeout"/>) and returns the finished process.</summary>
    public static async Task<ChildProcess> RunAsync(TimeSpan timeout, params string[] args)
    {
        Assert.True(File.Exists(Dll), $"{Dll} is missing: the test project must reference clients/Spa.LoadTest");
        var host = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        var start = new ProcessStartInfo(host) { WorkingDirectory = SharedData.RepoRoot };
        start.ArgumentList.Add(Dll);
        foreach (var arg in args) start.ArgumentList.Add(arg);
        start.Environment.Remove("SPA_DEBUG");
        start.Environment["OMP_NUM_THREADS"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        var process = ChildProcess.Start(start);
        await process.WaitForExitAsync(timeout);
        return process;
    }
}
