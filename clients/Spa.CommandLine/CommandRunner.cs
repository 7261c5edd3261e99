using System.CommandLine;
using System.CommandLine.Invocation;
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
    /// How long a command may take to stop after SIGTERM or Ctrl+C cancelled its token before the process ends anyway.
    /// System.CommandLine's default, 2 s, would cut short a host's graceful stop (a silo leaving the cluster and
    /// writing its grains' state may take up to the host's shutdown timeout, 30 s); other commands stop within
    /// milliseconds. (System.CommandLine waits on the thread that receives the signal, so the host's own console
    /// lifetime does not see it: the command's token is what stops a host.)
    /// </summary>
    public static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(40);

    /// <summary>
    /// Parses <paramref name="args"/> and runs the command they name. System.CommandLine answers a parse error with the
    /// error and the whole help text on stdout; here it is reported like every other failure instead: one line on
    /// stderr, exit code 2 (--help still wins over a parse error).
    /// </summary>
    public static async Task<int> RunAsync(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && parsed.Action is ParseErrorAction)
        {
            Console.Error.WriteLine(DescribeParseError(parsed));
            return BadUsage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = StopGrace });
    }

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
