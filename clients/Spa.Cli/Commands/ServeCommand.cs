using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Spa.Silo;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa serve</c>: the one-process cluster (Orleans silo + HTTP API) in this process, built by the same
/// <see cref="SiloHost"/> as <c>Spa.Silo</c>. Runs until Ctrl+C or SIGTERM.
/// </summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m")
        {
            Description = $"Model checkpoint (default: Spa:Model:ModelPath, else ${ModelArguments.ModelVariable}, else ../shared/data/models/stories260K beside the repository).",
        };
        var http = new Option<string?>("--http") { Description = $"Where HTTP listens, HOST:PORT (default: ASPNETCORE_URLS, else {SiloHost.DefaultHttp})." };
        var apiKey = new Option<string?>("--api-key") { Description = "An API key to accept (besides Spa:Auth:Keys); with none configured, one is generated and printed." };
        var shards = new Option<int?>("--shards") { Description = "Shards per session (default: Spa:Model:Shards, else 1)." };
        var siloPort = new Option<int>("--silo-port") { Description = "Silo-to-silo port of the localhost cluster.", DefaultValueFactory = _ => 11111 };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "Client gateway port of the localhost cluster.", DefaultValueFactory = _ => 30000 };

        var command = new Command("serve", "Run a one-process cluster (Orleans silo + OpenAI-compatible HTTP API) until stopped.");
        foreach (var option in new Option[] { model, http, apiKey, shards, siloPort, gatewayPort }) command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            if (result.GetValue(shards) is <= 0) throw new UsageException($"--shards must be positive, got {result.GetValue(shards)}");
            foreach (var port in new[] { siloPort, gatewayPort })
                if (result.GetValue(port) is <= 0 or > 65535) throw new UsageException($"{port.Name} must be a port number, got {result.GetValue(port)}");
            var app = SiloHost.Build(new SiloHostOptions
            {
                Model = result.GetValue(model),
                Http = result.GetValue(http),
                ApiKey = result.GetValue(apiKey),
                Shards = result.GetValue(shards),
                SiloPort = result.GetValue(siloPort),
                GatewayPort = result.GetValue(gatewayPort),
            });
            await using (app)
            {
                await app.StartAsync(CancellationToken.None);
                // Ctrl+C or SIGTERM: the host's lifetime or this command's token, whichever fires, stops the host cleanly.
                using (cancellation.Register(() => app.Lifetime.StopApplication()))
                    await app.WaitForShutdownAsync(CancellationToken.None);
            }
            return Environment.ExitCode;
        });
        return command;
    }
}
