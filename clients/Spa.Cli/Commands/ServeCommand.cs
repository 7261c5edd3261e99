using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Spa.CommandLine;
using Spa.Silo;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa serve</c>: a silo with the HTTP API in this process (alone, or with <c>--redis</c> one silo of a cluster),
/// built by the same <see cref="SiloHost"/> as <c>Spa.Silo</c>. Runs until Ctrl+C or SIGTERM.
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
        var redis = new Option<string?>("--redis")
        {
            Description = "Join the cluster of this Redis server, HOST:PORT (membership table and grain state; default: Spa:Cluster:Redis, else a one-process cluster).",
        };
        var siloPort = new Option<int>("--silo-port") { Description = "Silo-to-silo port.", DefaultValueFactory = _ => SiloHostOptions.DefaultSiloPort };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "Client gateway port.", DefaultValueFactory = _ => SiloHostOptions.DefaultGatewayPort };
        var advertise = new Option<string?>("--advertise")
        {
            Description = "With --redis: the IP address this silo binds and announces to the others (default: Spa:Cluster:Advertise, else 127.0.0.1).",
        };
        var tlsCert = new Option<string?>("--tls-cert")
        {
            Description = "Serve HTTPS and TLS on the gateway and silo ports with this certificate (PEM, or .pfx/.p12 with the password in Spa:Tls:Password; default: Spa:Tls:CertificatePath, else plain).",
        };
        var tlsKey = new Option<string?>("--tls-key") { Description = "The PEM private key of --tls-cert, when the certificate file does not hold it (default: Spa:Tls:KeyPath)." };

        var hosting = new Option<string?>("--hosting")
        {
            Description = $"Where the silo runs: {SiloHostOptions.HostHosting}, or {SiloHostOptions.KubernetesHosting} in a pod (needs --redis; the pod's name, namespace and IP from the downward API; default: Spa:Cluster:Hosting, else {SiloHostOptions.HostHosting}).",
        };

        var command = new Command("serve", "Run a silo with the OpenAI-compatible HTTP API until stopped: a one-process cluster, or with --redis one silo of a cluster.");
        foreach (var option in new Option[] { model, http, apiKey, shards, redis, siloPort, gatewayPort, advertise, hosting, tlsCert, tlsKey }) command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            // SiloHost.Build validates every value (SiloHostOptions.Validate), as for Spa.Silo; its ArgumentException is bad usage.
            var app = SiloHost.Build(new SiloHostOptions
            {
                Model = result.GetValue(model),
                Http = result.GetValue(http),
                ApiKey = result.GetValue(apiKey),
                Shards = result.GetValue(shards),
                Redis = result.GetValue(redis),
                SiloPort = result.GetValue(siloPort),
                GatewayPort = result.GetValue(gatewayPort),
                Advertise = result.GetValue(advertise),
                Hosting = result.GetValue(hosting),
                TlsCertificate = result.GetValue(tlsCert),
                TlsKey = result.GetValue(tlsKey),
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
