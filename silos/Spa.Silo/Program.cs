using Spa.Silo;

// The one-process cluster: Orleans silo + HTTP API. See SiloHostOptions.Usage; SIGTERM or Ctrl+C stops it.
SiloHostOptions options;
try
{
    options = SiloHostOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"Spa.Silo: error: {e.Message}");
    return 2;
}
try
{
    var app = SiloHost.Build(options);
    await app.RunAsync();
    return Environment.ExitCode;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"Spa.Silo: error: {e.Message}");
    return 2;
}
