using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using StackExchange.Redis;
using Testcontainers.Redis;
using Xunit;

namespace Spa.Testing;

/// <summary>
/// A Redis server of its own for a test class: a Testcontainers container when a Docker daemon answers, otherwise
/// <c>redis-server</c> from PATH on a free loopback port (no persistence, its own temporary folder), killed on
/// dispose. With neither, starting it fails with the reason, so the tests fail rather than pass without Redis.
/// </summary>
public sealed class RedisServer : IAsyncLifetime
{
    public const string Image = "redis:7.4";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private RedisContainer? _container;
    private ChildProcess? _process;
    private string? _directory;

    /// <summary>"HOST:PORT" for <c>--redis</c> and StackExchange.Redis.</summary>
    public string Endpoint { get; private set; } = "";

    /// <summary>"docker" or "redis-server".</summary>
    public string Kind { get; private set; } = "";

    public async Task InitializeAsync()
    {
        if (await DockerDaemon.AnswersAsync())
        {
            _container = new RedisBuilder(Image).Build();
            await _container.StartAsync();
            (Endpoint, Kind) = (_container.GetConnectionString(), "docker");
            return;
        }

        var executable = FindOnPath("redis-server") ?? throw new InvalidOperationException(
            "these tests need Redis, and neither a Docker daemon nor redis-server on PATH was found: install redis-server " +
            "(Debian: apt-get install redis-server), as .ci/run does");
        _directory = Directory.CreateTempSubdirectory("spa-redis-").FullName;
        // A port found free can be taken before redis-server binds it: then it exits at once, and another port is tried.
        for (int attempt = 1; ; attempt++)
        {
            int port = Ports.Free();
            var start = new ProcessStartInfo(executable) { WorkingDirectory = _directory };
            foreach (var arg in new[] { "--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _directory })
                start.ArgumentList.Add(arg);
            _process = ChildProcess.Start(start);
            if (await AnswersPingAsync(port, _process))
            {
                (Endpoint, Kind) = ($"127.0.0.1:{port}", "redis-server");
                return;
            }
            var failed = _process.ToString();
            await _process.DisposeAsync();
            _process = null;
            if (attempt == 3) throw new InvalidOperationException($"redis-server did not answer PING within {StartTimeout.TotalSeconds} s\n{failed}");
        }
    }

    /// <summary>A client connection (the caller disposes it).</summary>
    public Task<ConnectionMultiplexer> ConnectAsync() => ConnectionMultiplexer.ConnectAsync(Endpoint);

    public async Task DisposeAsync()
    {
        if (_container is not null) await _container.DisposeAsync();
        if (_process is not null) await _process.DisposeAsync();
        if (_directory is not null) Directory.Delete(_directory, recursive: true);
    }

    /// <summary>Whether the server answers "+PONG" before <see cref="StartTimeout"/> (false at once when it exited).</summary>
    private static async Task<bool> AnswersPingAsync(int port, ChildProcess process)
    {
        try
        {
            return await Eventually.Until(async () => !process.HasExited && await PongAsync(port), pong => pong || process.HasExited, StartTimeout,
                "redis-server to answer PING", TimeSpan.FromMilliseconds(50), retryOn: e => e is SocketException or IOException or OperationCanceledException);
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private static async Task<bool> PongAsync(int port)
    {
        using var client = new TcpClient();
        using var attempt = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await client.ConnectAsync("127.0.0.1", port, attempt.Token);
        var stream = client.GetStream();
        await stream.WriteAsync("PING\r\n"u8.ToArray(), attempt.Token);
        var buffer = new byte[64];
        int read = await stream.ReadAsync(buffer, attempt.Token);
        return Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
        .Select(dir => Path.Combine(dir, name))
        .FirstOrDefault(File.Exists);
}
