using System.Net.Sockets;

namespace Spa.Testing;

/// <summary>Whether a Docker daemon answers, asked the way Testcontainers finds it by default (DOCKER_HOST, else the local socket).</summary>
public static class DockerDaemon
{
    private const string DefaultSocket = "/var/run/docker.sock";

    /// <summary>True when <c>GET /_ping</c> succeeds within two seconds; a missing socket answers false at once.</summary>
    public static async Task<bool> AnswersAsync()
    {
        var host = Environment.GetEnvironmentVariable("DOCKER_HOST");
        string? socket = null;
        Uri address;
        if (string.IsNullOrEmpty(host) || host.StartsWith("unix://", StringComparison.Ordinal))
        {
            socket = string.IsNullOrEmpty(host) ? DefaultSocket : host["unix://".Length..];
            if (!File.Exists(socket)) return false;
            address = new Uri("http://docker/");
        }
        else if (host.StartsWith("tcp://", StringComparison.Ordinal)) address = new Uri("http://" + host["tcp://".Length..]);
        else return false;

        using var handler = new SocketsHttpHandler();
        if (socket is not null)
            handler.ConnectCallback = async (_, cancellation) =>
            {
                var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await unix.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancellation);
                    return new NetworkStream(unix, ownsSocket: true);
                }
                catch
                {
                    unix.Dispose();
                    throw;
                }
            };
        using var client = new HttpClient(handler) { BaseAddress = address, Timeout = TimeSpan.FromSeconds(2) };
        try
        {
            using var response = await client.GetAsync("/_ping");
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or SocketException)
        {
            return false;
        }
    }
}
