using Spa.Silo;

// A silo with the HTTP API: a one-process cluster, or one silo of a Redis cluster. See SiloHostOptions.Usage; SIGTERM
// or Ctrl+C stops it. Every failure is one line on stderr: 2 for bad usage, 1 for anything else (SPA_DEBUG=1: the trace).
try
{
    var app = SiloHost.Build(SiloHostOptions.Parse(args));
    await app.RunAsync();
    return Environment.ExitCode;
}
catch (Exception e) when (Environment.GetEnvironmentVariable("SPA_DEBUG") != "1")
{
    Console.Error.WriteLine($"Spa.Silo: error: {e.Message.ReplaceLineEndings(" ")}");
    return e is ArgumentException ? 2 : 1;
}
