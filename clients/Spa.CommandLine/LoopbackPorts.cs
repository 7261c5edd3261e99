using System.Net;
using System.Net.Sockets;

namespace Spa.CommandLine;

/// <summary>Ports for a silo a command starts in its own process.</summary>
public static class LoopbackPorts
{
    /// <summary>Two loopback ports free now (silo, gateway); both are held while the second is chosen so that they differ.</summary>
    public static (int, int) FreePair()
    {
        using var first = new TcpListener(IPAddress.Loopback, 0);
        using var second = new TcpListener(IPAddress.Loopback, 0);
        first.Start();
        second.Start();
        return (((IPEndPoint)first.LocalEndpoint).Port, ((IPEndPoint)second.LocalEndpoint).Port);
    }
}
