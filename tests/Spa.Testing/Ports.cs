using System.Net;
using System.Net.Sockets;

namespace Spa.Testing;

public static class Ports
{
    /// <summary>
    /// <paramref name="count"/> distinct loopback ports that were free a moment ago (each held open until all are
    /// chosen, so they differ). Another program may still take one before it is used.
    /// </summary>
    public static int[] Free(int count)
    {
        var listeners = new List<TcpListener>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                var listener = new TcpListener(IPAddress.Loopback, 0);
                listener.Start();
                listeners.Add(listener);
            }
            return [.. listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var listener in listeners) listener.Stop();
        }
    }

    public static int Free() => Free(1)[0];
}
