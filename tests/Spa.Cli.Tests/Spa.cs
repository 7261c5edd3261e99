using System.Diagnostics;
using System.Text;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>What one run of the <c>spa</c> program produced.</summary>
public sealed record SpaResult(int ExitCode, string Stdout, string Stderr, string CommandLine)
{
    /// <summary>Stderr split into lines (a final newline does not make an extra empty line).</summary>
    public string[] StderrLines => Stderr.ReplaceLineEndings("\n").TrimEnd('\n') is var text && text.Length == 0 ? [] : text.Split('\n');

    public override string ToString() =>
        $"$ {CommandLine}\nexit code {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>
/// Runs the real <c>spa</c> program (spa.dll, copied into the test output by the project reference) as a separate
/// process: <c>dotnet spa.dll args...</c>, capturing stdout, stderr and the exit code, killing it on a timeout.
/// </summary>
public static class Spa
{
    public static TimeSpan DefaultTimeout { get; } = TimeSpan.FromSeconds(90);

    public static string Dll { get; } = Path.Combine(AppContext.BaseDirectory, "spa.dll");

    /// <summary>The silo program (Spa.Silo), which takes the options of <c>spa serve</c>.</summary>
    public static string SiloDll { get; } = Path.Combine(AppContext.BaseDirectory, "Spa.Silo.dll");

    /// <summary>Runs spa with <paramref name="args"/> from the repository root.</summary>
    public static Task<SpaResult> RunAsync(params string[] args) => RunAsync(args, workingDirectory: null);

    /// <param name="environment">Variables to set (a null value removes the variable).</param>
    /// <param name="program">The program's dll: <see cref="Dll"/> (spa) unless given.</param>
    public static async Task<SpaResult> RunAsync(IEnumerable<string> args, string? workingDirectory = null,
        IReadOnlyDictionary<string, string?>? environment = null, TimeSpan? timeout = null, string? program = null)
    {
        program ??= Dll;
        var start = StartInfo(program, args, workingDirectory, environment);
        var commandLine = Path.GetFileNameWithoutExtension(program) + " " + string.Join(" ", args.Select(Quote));
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start " + start.FileName);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Assert.Fail($"timed out after {(timeout ?? DefaultTimeout).TotalSeconds} s and was killed: {commandLine}\n" +
                        $"--- stdout ---\n{await stdout}\n--- stderr ---\n{await stderr}");
        }
        return new SpaResult(process.ExitCode, await stdout, await stderr, commandLine);
    }

    /// <summary>
    /// Starts spa (or <paramref name="program"/>) with <paramref name="args"/> from the repository root and leaves it
    /// running (a server): the caller stops it, and disposing the result kills it if it still runs.
    /// </summary>
    public static ChildProcess Start(IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null, string? program = null) =>
        ChildProcess.Start(StartInfo(program ?? Dll, args, workingDirectory: null, environment));

    private static ProcessStartInfo StartInfo(string program, IEnumerable<string> args, string? workingDirectory,
        IReadOnlyDictionary<string, string?>? environment)
    {
        Assert.True(File.Exists(program), $"{program} is missing: the test project must reference clients/Spa.Cli");
        var start = new ProcessStartInfo(DotnetHost())
        {
            WorkingDirectory = workingDirectory ?? SharedData.RepoRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        start.ArgumentList.Add(program);
        foreach (var arg in args) start.ArgumentList.Add(arg);

        // Deterministic surroundings: the model comes from the command line unless a test says otherwise, no debug
        // stack traces, and one torch thread per process (tests run in parallel on few cores; several processes
        // each spinning one OpenMP thread per core make decoding an order of magnitude slower).
        start.Environment.Remove("SPA_MODEL");
        start.Environment.Remove("SPA_DEBUG");
        start.Environment["OMP_NUM_THREADS"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) start.Environment.Remove(name);
            else start.Environment[name] = value;
        }

        return start;
    }

    /// <summary>The dotnet host running these tests when it is one (so the same runtime runs spa), else dotnet on PATH.</summary>
    private static string DotnetHost()
    {
        var current = Environment.ProcessPath;
        if (current != null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        return !string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk) ? fromSdk : "dotnet";
    }

    private static string Quote(string arg) =>
        arg.Length > 60 ? $"\"{arg[..40]}...\" ({arg.Length} chars)"
        : arg.Length == 0 || arg.Any(char.IsWhiteSpace) ? $"\"{arg}\"" : arg;
}

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "spa-cli-tests-" + Guid.NewGuid().ToString("N"));

    public TempDir() => Directory.CreateDirectory(Path);

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
