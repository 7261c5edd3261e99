using System.CommandLine;
using Spa.CommandLine;
using Spa.Silo;

// The silo program (the image of k8s/ runs it): the options of `spa serve`, and failures reported the same way, one
// line on stderr with exit code 2 for bad usage and 1 for anything else (SPA_DEBUG=1: the trace).
return await CommandRunner.RunAsync(new SiloArguments().AddTo(new RootCommand(
    "Run a SPA silo with the OpenAI-compatible HTTP API until stopped: a one-process cluster, or with --redis one silo of a cluster.")), args);
