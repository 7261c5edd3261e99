using System.CommandLine;
using Spa.CommandLine;
using Spa.Grains;
using Spa.Model.Checkpoints;

namespace Spa.Silo;

/// <summary>
/// The silo's command line, defined once for the silo program and <c>spa serve</c>: the options, how they become
/// <see cref="SiloHostOptions"/> (what they leave unset comes from the configuration, and
/// <see cref="SiloHostOptions.Validate"/> checks the result), and the action that runs the host until SIGTERM or Ctrl+C.
/// </summary>
public sealed class SiloArguments
{
    public Option<string?> Model { get; } = new("--model", "-m")
    {
        Description = $"Model checkpoint (default: {SpaModelOptions.Section}:ModelPath, else ${ModelLocator.ModelVariable}, else ../shared/data/models/stories260K beside the repository).",
    };

    public Option<string?> ChatTemplate { get; } = new("--chat-template")
    {
        Description = $"How /v1/chat/completions turns messages into a prompt: {Silo.ChatTemplate.PlainName} (the messages' text, one per line), {Silo.ChatTemplate.Llama2Name} (LLaMA-2 chat's [INST] format, as llama2.c renders it), or a file: a Hugging Face chat template (Jinja) or a tokenizer_config.json with one (default: {SpaModelOptions.Section}:ChatTemplate, else the checkpoint's tokenizer_config.json, else {Silo.ChatTemplate.PlainName} for a llama2.c checkpoint).",
    };

    public Option<string?> Http { get; } = new("--http") { Description = $"Where HTTP listens, HOST:PORT or a URL (default: ASPNETCORE_URLS, else {SiloHost.DefaultHttp})." };

    public Option<string?> ApiKey { get; } = new("--api-key")
    {
        Description = "An API key to accept (besides Spa:Auth:Keys); with none configured, one is generated and printed.",
    };

    public Option<int?> Shards { get; } = new("--shards") { Description = $"Shards per session (default: {SpaModelOptions.Section}:Shards, else 1)." };

    public Option<string?> Redis { get; } = new("--redis")
    {
        Description = $"Join the cluster of this Redis server, HOST:PORT (membership table and grain state; default: {SpaClusterOptions.Section}:Redis, else a one-process cluster).",
    };

    public Option<int> SiloPort { get; } = new("--silo-port") { Description = "Silo-to-silo port.", DefaultValueFactory = _ => SiloHostOptions.DefaultSiloPort };

    public Option<int> GatewayPort { get; } = new("--gateway-port") { Description = "Client gateway port.", DefaultValueFactory = _ => SiloHostOptions.DefaultGatewayPort };

    public Option<string?> Advertise { get; } = new("--advertise")
    {
        Description = $"With --redis: the IP address this silo binds and announces to the others (default: {SpaClusterOptions.Section}:Advertise, else 127.0.0.1).",
    };

    public Option<string?> Hosting { get; } = new("--hosting")
    {
        Description = $"Where the silo runs: {SiloHostOptions.HostHosting}, or {SiloHostOptions.KubernetesHosting} in a pod (needs --redis; the pod's name, namespace and IP from the downward API; default: {SpaClusterOptions.Section}:Hosting, else {SiloHostOptions.HostHosting}).",
    };

    public Option<string?> TlsCertificate { get; } = new("--tls-cert")
    {
        Description = $"Serve HTTPS and TLS on the gateway and silo ports with this certificate (PEM, or .pfx/.p12 with the password in {SpaTlsOptions.Section}:Password; default: {SpaTlsOptions.Section}:CertificatePath, else plain).",
    };

    public Option<string?> TlsKey { get; } = new("--tls-key")
    {
        Description = $"The PEM private key of --tls-cert, when the certificate file does not hold it (default: {SpaTlsOptions.Section}:KeyPath).",
    };

    /// <summary>Adds the options to <paramref name="command"/> and makes it run the silo host until stopped.</summary>
    public TCommand AddTo<TCommand>(TCommand command) where TCommand : Command
    {
        foreach (var option in All) command.Options.Add(option);
        // SiloHost.Build validates every value; its ArgumentException is bad usage (exit code 2).
        command.SetGuardedAction(async (result, cancellation) =>
        {
            // SIGTERM or Ctrl+C cancels the token: the host then stops gracefully (the silo leaves the cluster and
            // writes its grains' state), within CommandRunner.StopGrace.
            await using var app = SiloHost.Build(Read(result));
            await app.RunAsync(cancellation);
            return Environment.ExitCode;
        });
        return command;
    }

    public SiloHostOptions Read(ParseResult result) => new()
    {
        Model = result.GetValue(Model),
        Http = result.GetValue(Http),
        ApiKey = result.GetValue(ApiKey),
        Shards = result.GetValue(Shards),
        ChatTemplate = result.GetValue(ChatTemplate),
        Redis = result.GetValue(Redis),
        SiloPort = result.GetValue(SiloPort),
        GatewayPort = result.GetValue(GatewayPort),
        Advertise = result.GetValue(Advertise),
        Hosting = result.GetValue(Hosting),
        TlsCertificate = result.GetValue(TlsCertificate),
        TlsKey = result.GetValue(TlsKey),
    };

    private IEnumerable<Option> All => [Model, ChatTemplate, Http, ApiKey, Shards, Redis, SiloPort, GatewayPort, Advertise, Hosting, TlsCertificate, TlsKey];
}
