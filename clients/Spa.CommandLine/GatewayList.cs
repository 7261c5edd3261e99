using System.Net;

namespace Spa.CommandLine;

/// <summary>The <c>--cluster</c> option of the Orleans clients (spa-device, spa-load): the cluster's gateways.</summary>
public static class GatewayList
{
    /// <summary>"HOST:PORT[,HOST:PORT...]" as gateway endpoints; host names are resolved once, here.</summary>
    public static IReadOnlyList<IPEndPoint> Parse(string text)
    {
        var endpoints = new List<IPEndPoint>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int colon = part.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(part[(colon + 1)..], out int port) || port is <= 0 or > 65535)
                throw new UsageException($"--cluster: '{part}' is not HOST:PORT (a gateway port of the cluster)");
            var host = part[..colon];
            var address = IPAddress.TryParse(host, out var ip) ? ip
                : Dns.GetHostAddresses(host).FirstOrDefault() ?? throw new UsageException($"--cluster: cannot resolve '{host}'");
            endpoints.Add(new IPEndPoint(address, port));
        }
        return endpoints.Count > 0 ? endpoints : throw new UsageException("--cluster needs at least one HOST:PORT");
    }
}
