using System.CommandLine;
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
return await CommandRunner.RunAsync(root, args);
