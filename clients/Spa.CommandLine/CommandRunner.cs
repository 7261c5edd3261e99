using System.CommandLine;
using Spa.Model;

namespace Spa.CommandLine;

/// <summary>
/// Runs a command's body and turns every failure into one line on stderr and a non-zero exit code: users see what
/// went wrong, never a stack trace (set SPA_DEBUG=1 to get one).
/// </summary>
public static class CommandRunner
{
    public const int Failed = 1;
    public const int BadUsage = 2;
    public const int Cancelled = 130;

    /// <summary>
    /// Sets <paramref name="body"/> as the command's action, wrapped in the error handling above. (Deliberately not
    /// named SetAction: C# never picks an extension method over Command's own SetAction with the same signature, and
    /// System.CommandLine's default handler prints "Unhandled exception" with the stack trace.)
    /// </summary>
    public static void SetGuardedAction(this Command command, Func<ParseResult, CancellationToken, Task<int>> body) =>
        command.SetAction(async (result, cancellation) =>
        {
            try
            {
                return await body(result, cancellation);
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                Console.Error.WriteLine($"{CommandPath(result)}: cancelled");
                return Cancelled;
            }
            catch (Exception e) when (Environment.GetEnvironmentVariable("SPA_DEBUG") != "1")
            {
                Console.Error.WriteLine($"{CommandPath(result)}: error: {Describe(e)}");
                return e is UsageException or ArgumentException or ContextOverflowException ? BadUsage : Failed;
            }
        });

    /// <summary>
    /// The parse errors as one line, naming the command and where its help is. Errors about words that were not
    /// understood come first: for "spa frobnicate" the typo explains more than the missing command does.
    /// </summary>
    public static string DescribeParseError(ParseResult result)
    {
        var command = CommandPath(result);
        var messages = result.Errors
            .Select(e => e.Message.ReplaceLineEndings(" ").Trim())
            .Distinct()
            .OrderBy(m => result.UnmatchedTokens.Any(t => m.Contains($"'{t}'", StringComparison.Ordinal)) ? 0 : 1);
        return $"{command}: error: {string.Join(" ", messages)} (see {command} --help)";
    }

    /// <summary>The program's name followed by the subcommands the user typed, e.g. "spa bench decode".</summary>
    private static string CommandPath(ParseResult result)
    {
        var names = new List<string>();
        for (var node = result.CommandResult; node != null; node = node.Parent as System.CommandLine.Parsing.CommandResult)
            if (node.Command is not RootCommand) names.Insert(0, node.Command.Name);
        return string.Join(" ", [result.RootCommandResult.Command.Name, .. names]);
    }

    private static string Describe(Exception e)
    {
        var message = e is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerException!.Message : e.Message;
        return message.ReplaceLineEndings(" ");
    }
}
