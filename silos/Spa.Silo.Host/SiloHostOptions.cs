using System.Globalization;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Orleans.Hosting.Kubernetes;
using Spa.Edge;
using Spa.Grains;
using Spa.Model.Checkpoints;
using StackExchange.Redis;

namespace Spa.Silo;

/// <summary>
/// The silo host's settings. The command line of <c>Spa.Silo</c> and of <c>spa serve</c> (<see cref="SiloArguments"/>)
/// sets them; what it leaves null comes from the configuration (<see cref="WithConfiguration"/>: appsettings.json,
/// environment variables such as <c>Spa__Model__ModelPath</c> or <c>Spa__Cluster__Redis</c>, ASPNETCORE_URLS), and
/// <see cref="Validate"/> checks the result for both programs.
/// </summary>
public sealed class SiloHostOptions
{
    public const int DefaultSiloPort = 11111;
    public const int DefaultGatewayPort = 30000;

    /// <summary>Where HTTP listens: "HOST:PORT" or a URL (port 0: any free port). Default: ASPNETCORE_URLS, else 127.0.0.1:8080.</summary>
    public string? Http { get; set; }

    /// <summary>The model checkpoint (Spa:Model:ModelPath); default $SPA_MODEL, else stories260K beside the repository.</summary>
    public string? Model { get; set; }

    /// <summary>Shards per session (Spa:Model:Shards).</summary>
    public int? Shards { get; set; }

    /// <summary>
    /// How chat messages become a prompt (Spa:Model:ChatTemplate): plain, llama-2, or a file; null: the checkpoint's own
    /// (see <see cref="Silo.ChatTemplate.Resolve"/>).
    /// </summary>
    public string? ChatTemplate { get; set; }

    /// <summary>An API key accepted in addition to those of Spa:Auth:Keys (its user is "default").</summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// The Redis server that holds the membership table and the grain state ("HOST:PORT", or a StackExchange.Redis
    /// configuration string); null: one host, localhost clustering and memory storage (Spa:Cluster:Redis).
    /// </summary>
    public string? Redis { get; set; }

    /// <summary>Silo-to-silo port (Orleans' default 11111).</summary>
    public int SiloPort { get; set; } = DefaultSiloPort;

    /// <summary>Client gateway port (Orleans' default 30000).</summary>
    public int GatewayPort { get; set; } = DefaultGatewayPort;

    /// <summary>
    /// With Redis: the IP address the silo binds and announces to the other silos (Spa:Cluster:Advertise). The
    /// default, 127.0.0.1, lets several silos share one host; silos on other hosts need an address they can reach.
    /// </summary>
    public string? Advertise { get; set; }

    /// <summary>The Orleans cluster this silo joins (Spa:Cluster:ClusterId, default spa); spa-device presents the same id.</summary>
    public string? ClusterId { get; set; }

    /// <summary>The service whose grain state this silo reads and writes (Spa:Cluster:ServiceId, default spa).</summary>
    public string? ServiceId { get; set; }

    /// <summary>
    /// Where the silo runs (Spa:Cluster:Hosting): <see cref="HostHosting"/> (default), or <see cref="KubernetesHosting"/>
    /// in a pod, where Orleans' Kubernetes hosting names the silo after the pod, advertises the pod's IP, takes the
    /// cluster and service ids from the pod's labels and watches the cluster's pods; it needs Redis.
    /// </summary>
    public string? Hosting { get; set; }

    /// <summary>Under Kubernetes hosting: the pod's name, from the downward API variable POD_NAME.</summary>
    public string? PodName { get; set; }

    /// <summary>Under Kubernetes hosting: the pod's namespace (POD_NAMESPACE).</summary>
    public string? PodNamespace { get; set; }

    /// <summary>Under Kubernetes hosting: the pod's IP address (POD_IP), the address the silo advertises.</summary>
    public string? PodIP { get; set; }

    public const string HostHosting = "host";
    public const string KubernetesHosting = "kubernetes";

    /// <summary>Whether <see cref="Hosting"/> is <see cref="KubernetesHosting"/>.</summary>
    public bool InKubernetes => string.Equals(Hosting, KubernetesHosting, StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// TLS: the server certificate (PEM, or a .pfx/.p12 file) for HTTPS and the Orleans gateway and silo ports
    /// (Spa:Tls:CertificatePath); null: plain TCP. A PKCS#12 password comes from Spa:Tls:Password (e.g. the
    /// environment variable Spa__Tls__Password), never the command line.
    /// </summary>
    public string? TlsCertificate { get; set; }

    /// <summary>The PEM private key of <see cref="TlsCertificate"/> (Spa:Tls:KeyPath); null when the certificate file holds it.</summary>
    public string? TlsKey { get; set; }

    /// <summary>The password of a PKCS#12 <see cref="TlsCertificate"/> (Spa:Tls:Password).</summary>
    public string? TlsPassword { get; set; }

    /// <summary>
    /// The certificates (PEM bundle) another silo's certificate must chain to (Spa:Tls:TrustPath); default: the
    /// certificate of <see cref="TlsCertificate"/> itself, for silos that share one certificate.
    /// </summary>
    public string? TlsTrust { get; set; }

    public bool Tls => TlsCertificate is not null;

    /// <summary>Where the generated API key is announced; default stdout.</summary>
    public TextWriter? Announce { get; set; }

    /// <summary>Log warnings and errors only (a host embedded in a command that prints its own output).</summary>
    public bool Quiet { get; set; }

    /// <summary>
    /// These options with what they leave unset taken from <paramref name="configuration"/>: the model and shards
    /// from Spa:Model (the model then from $SPA_MODEL or the shared data folder), the cluster from Spa:Cluster. Under
    /// Kubernetes hosting the pod and the cluster and service ids come from the variables the downward API sets
    /// (POD_NAME, POD_NAMESPACE, POD_IP, ORLEANS_CLUSTER_ID, ORLEANS_SERVICE_ID), as Orleans' Kubernetes hosting reads
    /// them: the ids must be the pod's labels, by which the silos find each other's pods.
    /// </summary>
    public SiloHostOptions WithConfiguration(IConfiguration configuration)
    {
        var model = configuration.GetSection(SpaModelOptions.Section).Get<SpaModelOptions>() ?? new SpaModelOptions();
        var cluster = configuration.GetSection(SpaClusterOptions.Section).Get<SpaClusterOptions>() ?? new SpaClusterOptions();
        var resolved = (SiloHostOptions)MemberwiseClone();
        resolved.Model ??= ModelLocator.Resolve(model.ModelPath);
        resolved.Shards ??= model.Shards;
        resolved.ChatTemplate ??= configuration[$"{SpaModelOptions.Section}:ChatTemplate"];
        resolved.Redis ??= cluster.Redis;
        resolved.Advertise ??= cluster.Advertise;
        resolved.Hosting ??= cluster.Hosting;
        if (resolved.InKubernetes)
        {
            resolved.PodName ??= configuration[KubernetesHostingOptions.PodNameEnvironmentVariable];
            resolved.PodNamespace ??= configuration[KubernetesHostingOptions.PodNamespaceEnvironmentVariable];
            resolved.PodIP ??= configuration[KubernetesHostingOptions.PodIPEnvironmentVariable];
            resolved.ClusterId ??= configuration[KubernetesHostingOptions.ClusterIdEnvironmentVariable];
            resolved.ServiceId ??= configuration[KubernetesHostingOptions.ServiceIdEnvironmentVariable];
            return resolved;
        }
        resolved.ClusterId ??= cluster.ClusterId;
        resolved.ServiceId ??= cluster.ServiceId;
        var tls = configuration.GetSection(SpaTlsOptions.Section).Get<SpaTlsOptions>() ?? new SpaTlsOptions();
        resolved.TlsCertificate ??= tls.CertificatePath;
        resolved.TlsKey ??= tls.KeyPath;
        resolved.TlsPassword ??= tls.Password;
        resolved.TlsTrust ??= tls.TrustPath;
        return resolved;
    }

    /// <summary>Throws <see cref="ArgumentException"/> with a one-line reason for the first setting that cannot work.</summary>
    public void Validate()
    {
        if (Http is not null) HttpEndpoint(Http);
        if (Shards is <= 0) throw new ArgumentException($"--shards ({SpaModelOptions.Section}:Shards) must be positive, got {Shards}");
        CheckPort("--silo-port", SiloPort);
        CheckPort("--gateway-port", GatewayPort);
        if (SiloPort == GatewayPort) throw new ArgumentException($"--silo-port and --gateway-port must differ, both are {SiloPort}");
        if (Hosting is not null && !InKubernetes && !string.Equals(Hosting, HostHosting, StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"--hosting ({SpaClusterOptions.Section}:Hosting) must be {HostHosting} or {KubernetesHosting}, got '{Hosting}'");
        if (InKubernetes) ValidateKubernetes();
        if (Redis is not null) RedisConfiguration();
        else if (Advertise is not null)
            throw new ArgumentException($"--advertise ({SpaClusterOptions.Section}:Advertise) needs --redis ({SpaClusterOptions.Section}:Redis): a localhost cluster advertises 127.0.0.1");
        if (Advertise is not null && !IPAddress.TryParse(Advertise, out _))
            throw new ArgumentException($"--advertise ({SpaClusterOptions.Section}:Advertise) must be an IP address, got '{Advertise}'");
        if (ClusterId is not null && string.IsNullOrWhiteSpace(ClusterId)) throw new ArgumentException($"{SpaClusterOptions.Section}:ClusterId must not be empty");
        if (ServiceId is not null && string.IsNullOrWhiteSpace(ServiceId)) throw new ArgumentException($"{SpaClusterOptions.Section}:ServiceId must not be empty");
        if (TlsCertificate is null && (TlsKey ?? TlsTrust) is not null)
            throw new ArgumentException($"--tls-key ({SpaTlsOptions.Section}:KeyPath) and {SpaTlsOptions.Section}:TrustPath need --tls-cert ({SpaTlsOptions.Section}:CertificatePath)");
        if (Tls && Http is not null && Http.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"--http is the plain URL '{Http}' but TLS is on (--tls-cert): give HOST:PORT or an https:// URL");
        if (string.IsNullOrWhiteSpace(Model))
            throw new ArgumentException($"no model given and none found: pass --model PATH, set {SpaModelOptions.Section}:ModelPath or ${ModelLocator.ModelVariable}");
        if (!File.Exists(Model) && !Directory.Exists(Model)) throw new ArgumentException($"the model {Model} does not exist");
    }

    private void ValidateKubernetes()
    {
        const string hosting = $"--hosting {KubernetesHosting} ({SpaClusterOptions.Section}:Hosting)";
        if (Redis is null)
            throw new ArgumentException($"{hosting} needs --redis ({SpaClusterOptions.Section}:Redis): silos in pods keep their membership table and state in Redis");
        if (Advertise is not null)
            throw new ArgumentException($"--advertise ({SpaClusterOptions.Section}:Advertise) does not apply under {hosting}: the silo advertises its pod's IP");
        foreach (var (value, variable, source) in new[]
        {
            (PodName, KubernetesHostingOptions.PodNameEnvironmentVariable, "fieldRef metadata.name"),
            (PodNamespace, KubernetesHostingOptions.PodNamespaceEnvironmentVariable, "fieldRef metadata.namespace"),
            (PodIP, KubernetesHostingOptions.PodIPEnvironmentVariable, "fieldRef status.podIP"),
            (ClusterId, KubernetesHostingOptions.ClusterIdEnvironmentVariable, $"fieldRef metadata.labels['{KubernetesHostingOptions.ClusterIdLabel}']"),
            (ServiceId, KubernetesHostingOptions.ServiceIdEnvironmentVariable, $"fieldRef metadata.labels['{KubernetesHostingOptions.ServiceIdLabel}']"),
        })
            if (string.IsNullOrWhiteSpace(value))
                throw new ArgumentException($"{hosting} needs the environment variable {variable} from the downward API ({source})");
        if (!IPAddress.TryParse(PodIP, out _))
            throw new ArgumentException($"{KubernetesHostingOptions.PodIPEnvironmentVariable} must be an IP address, got '{PodIP}'");
    }

    /// <summary>The StackExchange.Redis configuration of <see cref="Redis"/>; throws <see cref="ArgumentException"/> when it is not one.</summary>
    public ConfigurationOptions RedisConfiguration()
    {
        var invalid = new ArgumentException($"--redis ({SpaClusterOptions.Section}:Redis) must be HOST:PORT with a port from 1 to 65535, got '{Redis}'");
        ConfigurationOptions parsed;
        try
        {
            parsed = ConfigurationOptions.Parse(Redis ?? "");
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            throw invalid;
        }
        if (parsed.EndPoints.Count == 0
            || parsed.EndPoints.Any(endpoint => endpoint is DnsEndPoint { Port: <= 0 or > 65535 } or IPEndPoint { Port: <= 0 or > 65535 }))
            throw invalid;
        return parsed;
    }

    /// <summary>"HOST:PORT" or a URL as a URL Kestrel binds to; HOST:PORT is https:// when <paramref name="tls"/>.</summary>
    public static string ToUrl(string http, bool tls = false) =>
        http.Contains("://", StringComparison.Ordinal) ? http : (tls ? "https://" : "http://") + http;

    /// <summary>The server certificate and the certificates other silos are trusted by; null without TLS. Throws <see cref="ArgumentException"/> for a bad file.</summary>
    public (X509Certificate2 Certificate, X509Certificate2Collection Trusted)? LoadTls()
    {
        if (TlsCertificate is null) return null;
        var certificate = TransportCertificates.LoadServer(TlsCertificate, TlsKey, TlsPassword,
            $"--tls-cert ({SpaTlsOptions.Section}:CertificatePath)", $"--tls-key ({SpaTlsOptions.Section}:KeyPath)");
        var trusted = TlsTrust is null ? new X509Certificate2Collection(certificate)
            : TransportCertificates.LoadTrust(TlsTrust, $"{SpaTlsOptions.Section}:TrustPath");
        return (certificate, trusted);
    }

    /// <summary>A URL is left to Kestrel; "HOST:PORT" must have both.</summary>
    private static void HttpEndpoint(string http)
    {
        if (http.Contains("://", StringComparison.Ordinal)) return;
        int colon = http.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(http[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535)
            throw new ArgumentException($"--http must be HOST:PORT (port 0: any free port) or a URL, got '{http}'");
    }

    private static void CheckPort(string name, int port)
    {
        if (port is <= 0 or > 65535) throw new ArgumentException($"{name} must be a port number from 1 to 65535, got {port}");
    }
}

/// <summary>
/// The cluster settings of the configuration section <see cref="Section"/>; the command line's <c>--redis</c> and
/// <c>--advertise</c> take precedence over them.
/// </summary>
public sealed class SpaClusterOptions
{
    public const string Section = "Spa:Cluster";

    /// <summary>See <see cref="SiloHostOptions.Redis"/>.</summary>
    public string? Redis { get; set; }

    /// <summary>See <see cref="SiloHostOptions.Advertise"/>.</summary>
    public string? Advertise { get; set; }

    /// <summary>See <see cref="SiloHostOptions.Hosting"/>.</summary>
    public string? Hosting { get; set; }

    public string ClusterId { get; set; } = "spa";

    public string ServiceId { get; set; } = "spa";
}

/// <summary>TLS settings of the configuration section <see cref="Section"/>; <c>--tls-cert</c> and <c>--tls-key</c> take precedence.</summary>
public sealed class SpaTlsOptions
{
    public const string Section = "Spa:Tls";

    /// <summary>See <see cref="SiloHostOptions.TlsCertificate"/>.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>See <see cref="SiloHostOptions.TlsKey"/>.</summary>
    public string? KeyPath { get; set; }

    /// <summary>See <see cref="SiloHostOptions.TlsPassword"/>.</summary>
    public string? Password { get; set; }

    /// <summary>See <see cref="SiloHostOptions.TlsTrust"/>.</summary>
    public string? TrustPath { get; set; }
}
