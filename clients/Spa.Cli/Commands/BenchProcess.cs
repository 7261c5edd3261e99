using System.CommandLine;
using System.Diagnostics;
using System.Reflection;
using System.Text.Json;

namespace Spa.Cli.Commands;

/// <summary>
/// Runs one measurement of a benchmark in a child process of this program, so that its peak resident memory (VmHWM)
/// is its own and nothing an earlier measurement allocated is counted. The child prints one JSON line on stdout.
/// </summary>
public static class BenchProcess
{
    /// <summary>
    /// <paramref name="command"/> followed by every option the user set on the parent's command except
    /// <paramref name="skipped"/>: what a child needs to measure under the same settings.
    /// </summary>
    public static List<string> Arguments(ParseResult result, IEnumerable<string> command, params string[] skipped)
    {
        var forwarded = command.ToList();
        foreach (var option in result.CommandResult.Command.Options)
        {
            if (skipped.Contains(option.Name)) continue;
            var value = result.GetResult(option);
            if (value is null || value.Implicit) continue;
            forwarded.Add(option.Name);
            forwarded.AddRange(value.Tokens.Select(t => t.Value));
        }
        return forwarded;
    }

    public static T Run<T>(IReadOnlyList<string> args, string what, JsonSerializerOptions json, CancellationToken cancellation)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        using var stop = cancellation.Register(() => process.Kill(entireProcessTree: true));
        var output = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var errors = process.StandardError.ReadToEndAsync(CancellationToken.None);
        process.WaitForExit();
        cancellation.ThrowIfCancellationRequested();
        if (process.ExitCode != 0) throw new InvalidOperationException($"the {what} measurement failed: {errors.Result.Trim()}");
        return JsonSerializer.Deserialize<T>(output.Result.Trim(), json)
            ?? throw new InvalidOperationException($"the {what} measurement printed no figures");
    }
}
