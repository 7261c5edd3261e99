using System.CommandLine;
using Spa.Cli;
using Spa.Cli.Commands;

var root = new RootCommand("spa: SPA (Side Plugin Adaption) serving platform: generate, convert and benchmark LLaMA models.");
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(ConvertCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
return await root.Parse(args).InvokeAsync();
