using System.CommandLine;
using System.CommandLine.Invocation;
using Spa.Cli.Commands;
using Spa.CommandLine;

var root = new RootCommand("spa: SPA (Side Plugin Adaption) serving platform: generate, convert and benchmark LLaMA models.");
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(ConvertCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(SweepTauCommand.Create());
root.Subcommands.Add(LatencyCommand.Create());
root.Subcommands.Add(DataCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(DeviceCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(DashboardCommand.Create());
var parsed = root.Parse(args);
// System.CommandLine answers a parse error with the error and the whole help text on stdout. Report it like every
// other failure instead: one line on stderr, exit code 2. (--help still wins over a parse error.)
if (parsed.Errors.Count > 0 && parsed.Action is ParseErrorAction)
{
    Console.Error.WriteLine(CommandRunner.DescribeParseError(parsed));
    return CommandRunner.BadUsage;
}
return await parsed.InvokeAsync();
