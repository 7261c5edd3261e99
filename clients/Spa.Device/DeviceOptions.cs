using System.Net;
using System.Security.Cryptography.X509Certificates;
using Spa.Grains.Abstractions;

namespace Spa.Device;

/// <summary>
/// What spa-device is told on its command line. <see cref="TlsTrust"/>: connect over TLS, trusting a gateway whose
/// certificate chains to these; null: plain TCP.
/// </summary>
public sealed record DeviceOptions(
    IReadOnlyList<IPEndPoint> Gateways,
    string DeviceId,
    string Secret,
    string PluginDirectory,
    string ClusterId,
    string ServiceId,
    TimeSpan Renew,
    TimeSpan ConnectTimeout,
    EdgeProfile Profile,
    X509Certificate2Collection? TlsTrust)
{
    /// <summary>"HOST:PORT[,HOST:PORT...]" as gateway endpoints; host names are resolved once, here.</summary>
    public static IReadOnlyList<IPEndPoint> ParseGateways(string text)
    {
        var endpoints = new List<IPEndPoint>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int colon = part.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(part[(colon + 1)..], out int port) || port is <= 0 or > 65535)
                throw new ArgumentException($"--cluster: '{part}' is not HOST:PORT (the cluster's gateway port)");
            var host = part[..colon];
            var address = IPAddress.TryParse(host, out var ip) ? ip
                : Dns.GetHostAddresses(host).FirstOrDefault() ?? throw new ArgumentException($"--cluster: cannot resolve '{host}'");
            endpoints.Add(new IPEndPoint(address, port));
        }
        return endpoints.Count > 0 ? endpoints : throw new ArgumentException("--cluster needs at least one HOST:PORT");
    }
}
