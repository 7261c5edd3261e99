using System.CommandLine.Invocation;
using Spa.CommandLine;
using Spa.LoadTest;

var root = LoadCommand.Create();
var parsed = root.Parse(args);
// As spa does: a parse error is one line on stderr and exit code 2 (--help still wins over a parse error).
if (parsed.Errors.Count > 0 && parsed.Action is ParseErrorAction)
{
    Console.Error.WriteLine(CommandRunner.DescribeParseError(parsed));
    return CommandRunner.BadUsage;
}
return await parsed.InvokeAsync();
