using System.CommandLine;
using Spa.Model;

namespace Spa.Cli;

/// <summary>
/// Runs a command's body and turns every failure into one line on stderr and a non-zero exit code: users see what
/// went wrong, never a stack trace (set SPA_DEBUG=1 to get one).
/// </summary>
public static class CommandRunner
{
    public const int Failed = 1;
    public const int BadUsage = 2;
    public const int Cancelled = 130;

    public static void SetAction(this Command command, Func<ParseResult, CancellationToken, Task<int>> body) =>
        command.SetAction(async (result, cancellation) =>
        {
            try
            {
                return await body(result, cancellation);
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                Console.Error.WriteLine("spa: cancelled");
                return Cancelled;
            }
            catch (Exception e) when (Environment.GetEnvironmentVariable("SPA_DEBUG") != "1")
            {
                Console.Error.WriteLine($"spa {command.Name}: error: {Describe(e)}");
                return e is UsageException or ArgumentException or ContextOverflowException ? BadUsage : Failed;
            }
        });

    private static string Describe(Exception e)
    {
        var message = e is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerException!.Message : e.Message;
        return message.ReplaceLineEndings(" ");
    }
}
