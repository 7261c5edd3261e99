using System.Text.RegularExpressions;

namespace Spa.Cli.Tests;

/// <summary>Assertions shared by the tests, with the whole run in the failure message.</summary>
public static partial class Expect
{
    public static void Success(SpaResult run) => Assert.True(run.ExitCode == 0, "expected success\n" + run);

    /// <summary>
    /// A failure as users should see it: a non-zero exit code, nothing on stdout, and exactly one non-empty line on
    /// stderr that starts with "spa", says <paramref name="phrase"/> and carries no stack trace or exception type.
    /// </summary>
    public static void OneLineError(SpaResult run, string phrase, int? exitCode = null)
    {
        Assert.True(run.ExitCode != 0, "expected a failure\n" + run);
        if (exitCode is int code) Assert.True(run.ExitCode == code, $"expected exit code {code}\n" + run);
        else Assert.True(run.ExitCode is 1 or 2, "expected exit code 1 or 2\n" + run);
        Assert.True(run.Stdout.Length == 0, "expected nothing on stdout\n" + run);
        var lines = run.StderrLines;
        Assert.True(lines.Length == 1, $"expected exactly one line on stderr, got {lines.Length}\n" + run);
        var line = lines[0];
        Assert.False(string.IsNullOrWhiteSpace(line), "the error line is empty\n" + run);
        Assert.True(line.StartsWith("spa", StringComparison.Ordinal), "the error line should start with \"spa\"\n" + run);
        Assert.True(line.Contains(phrase, StringComparison.OrdinalIgnoreCase), $"the error line should say \"{phrase}\"\n" + run);
        NoStackTrace(run);
    }

    public static void NoStackTrace(SpaResult run)
    {
        var all = run.Stdout + "\n" + run.Stderr;
        Assert.False(all.Contains("   at ", StringComparison.Ordinal), "stack trace frames in the output\n" + run);
        Assert.False(all.Contains("Unhandled exception", StringComparison.OrdinalIgnoreCase), "unhandled exception\n" + run);
        Assert.False(ExceptionTypeName().IsMatch(all), "an exception type name in the output\n" + run);
        Assert.False(all.Contains("System.IO", StringComparison.Ordinal), "a .NET namespace in the output\n" + run);
    }

    /// <summary>The single summary line generate writes to stderr.</summary>
    public static string GenerateSummary(SpaResult run)
    {
        var lines = run.StderrLines;
        Assert.True(lines.Length == 1, $"expected exactly one summary line on stderr, got {lines.Length}\n" + run);
        Assert.Contains("tokens/s", lines[0]);
        Assert.Contains("time to first token", lines[0]);
        return lines[0];
    }

    /// <summary>Generate's stdout: the text and one final newline. Returns the text.</summary>
    public static string StoryText(SpaResult run)
    {
        Assert.True(run.Stdout.EndsWith('\n'), "stdout should end with one newline\n" + run);
        return run.Stdout[..^1];
    }

    [GeneratedRegex(@"\b[A-Z]\w*(\.\w+)*Exception\b")]
    private static partial Regex ExceptionTypeName();
}
