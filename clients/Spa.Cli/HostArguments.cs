using System.CommandLine;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Spa.CommandLine;
using Spa.Edge;

namespace Spa.Cli;

/// <summary>The options every command that talks to a running host's HTTP API shares, and the client they make.</summary>
public sealed class HostArguments(string urlDescription, string? defaultUrl)
{
    public Option<string> Url { get; } = new("--url")
    {
        Description = urlDescription,
        Required = defaultUrl is null,
        DefaultValueFactory = defaultUrl is null ? null : _ => defaultUrl,
    };

    public Option<string?> ApiKey { get; } = new("--api-key") { Description = "The API key to send (default: $SPA_API_KEY)." };

    public Option<string?> TlsCa { get; } = new("--tls-ca")
    {
        Description = "For an https:// URL: trust a host certificate that chains to the certificates in this PEM file (a CA, or the host's own " +
                      "self-signed certificate) and to nothing else. Without it the system's roots decide.",
    };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Url, ApiKey, TlsCa }) command.Options.Add(option);
    }

    /// <summary>
    /// A client for the host, with the API key as its bearer token; bad usage (a URL that is not http(s), no key, a CA
    /// file for a plain URL or one that cannot be read) is an error before anything is sent.
    /// </summary>
    public HttpClient CreateClient(ParseResult result, TimeSpan timeout, int maxConnections = int.MaxValue)
    {
        if (!Uri.TryCreate(result.GetValue(Url), UriKind.Absolute, out var address) || address.Scheme is not ("http" or "https"))
            throw new UsageException($"--url must be an http:// or https:// URL, got '{result.GetValue(Url)}'");
        var key = result.GetValue(ApiKey) ?? Environment.GetEnvironmentVariable("SPA_API_KEY")
            ?? throw new UsageException("give --api-key or set SPA_API_KEY");
        var handler = new SocketsHttpHandler { MaxConnectionsPerServer = maxConnections };
        if (result.GetValue(TlsCa) is { } ca)
        {
            if (address.Scheme != "https") throw new UsageException("--tls-ca is for an https:// URL");
            var trusted = TransportCertificates.LoadTrust(ca, "--tls-ca");
            // The host's name must match its certificate too, as for any HTTPS client; only the roots are ours.
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                !errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch) && !errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable)
                && certificate is X509Certificate2 presented && TransportCertificates.ChainsTo(presented, chain, trusted);
        }
        var http = new HttpClient(handler) { BaseAddress = address, Timeout = timeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }
}
