using System.CommandLine;
using Spa.Silo;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa serve</c>: a silo with the HTTP API in this process (alone, or with <c>--redis</c> one silo of a cluster),
/// with the silo program's options (<see cref="SiloArguments"/>). Runs until Ctrl+C or SIGTERM.
/// </summary>
public static class ServeCommand
{
    public static Command Create() => new SiloArguments().AddTo(new Command("serve",
        "Run a silo with the OpenAI-compatible HTTP API until stopped: a one-process cluster, or with --redis one silo of a cluster."));
}
