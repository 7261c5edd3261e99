using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Spa.Testing;

/// <summary>
/// A TCP relay that emulates a link's latency where the kernel cannot (no <c>sch_netem</c>): it listens on
/// <paramref name="listen"/>, forwards every connection to <paramref name="target"/>, and delivers each chunk it reads
/// one-way delay later, after the chunk's transfer time at the direction's rate (behind the chunks before it, so order
/// and the link's serialization are kept). The bytes still cross whatever lies between the client and the relay
/// (a veth pair, its tbf shaping).
/// </summary>
public sealed class DelayingRelay : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly Func<Socket> _newSocket;
    private readonly IPEndPoint _target;
    private readonly TimeSpan _oneWay;
    private readonly double _towardsTargetBitsPerSecond;
    private readonly double _backBitsPerSecond;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];
    private readonly List<Socket> _connections = [];

    private long _bytesTowardsTarget;
    private long _bytesBack;

    /// <summary>Bytes relayed towards the target so far (framing included: what crosses the wire).</summary>
    public long BytesTowardsTarget => Interlocked.Read(ref _bytesTowardsTarget);

    /// <summary>Bytes relayed back from the target so far.</summary>
    public long BytesBack => Interlocked.Read(ref _bytesBack);

    public IPEndPoint Endpoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <param name="newSocket">Makes a TCP socket, both the listening one and those that connect to the target (in the
    /// network namespace the relay is to live in).</param>
    /// <param name="towardsTargetMbps">Rate from the connecting side to the target.</param>
    /// <param name="backMbps">Rate from the target back.</param>
    public DelayingRelay(Func<Socket> newSocket, IPEndPoint listen, IPEndPoint target, double roundTripMs, double towardsTargetMbps, double backMbps)
    {
        _newSocket = newSocket;
        _target = target;
        _oneWay = TimeSpan.FromMilliseconds(roundTripMs / 2);
        _towardsTargetBitsPerSecond = towardsTargetMbps * 1e6;
        _backBitsPerSecond = backMbps * 1e6;
        _listener = newSocket();
        _listener.Bind(listen);
        _listener.Listen();
        _tasks.Add(AcceptAsync());
    }

    /// <summary>A relay that only forwards, in the host's own network namespace.</summary>
    public static DelayingRelay Plain(IPEndPoint listen, IPEndPoint target) =>
        new(NewTcpSocket, listen, target, 0, double.PositiveInfinity, double.PositiveInfinity);

    public static Socket NewTcpSocket() => new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            var server = _newSocket();
            try
            {
                await server.ConnectAsync(_target, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException)
            {
                client.Dispose(); // the target is gone: the client sees its connection closed, as it would without a relay
                server.Dispose();
                continue;
            }
            client.NoDelay = true;
            lock (_connections)
            {
                _connections.AddRange([client, server]);
                _tasks.Add(PumpAsync(new NetworkStream(client), new NetworkStream(server), _towardsTargetBitsPerSecond, towardsTarget: true));
                _tasks.Add(PumpAsync(new NetworkStream(server), new NetworkStream(client), _backBitsPerSecond, towardsTarget: false));
            }
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, double bitsPerSecond, bool towardsTarget)
    {
        var chunks = Channel.CreateUnbounded<(byte[] Bytes, long DueTicks)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var write = DeliverAsync(chunks.Reader, to);
        var buffer = new byte[64 * 1024];
        var lineFreeAt = 0L;
        try
        {
            int read;
            while ((read = await from.ReadAsync(buffer, _stop.Token)) > 0)
            {
                Interlocked.Add(ref towardsTarget ? ref _bytesTowardsTarget : ref _bytesBack, read);
                var now = Stopwatch.GetTimestamp();
                lineFreeAt = Math.Max(now, lineFreeAt) + (long)(read * 8 / bitsPerSecond * Stopwatch.Frequency);
                chunks.Writer.TryWrite((buffer[..read], lineFreeAt + (long)(_oneWay.TotalSeconds * Stopwatch.Frequency)));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
        {
            // the connection or the relay closed
        }
        chunks.Writer.TryComplete();
        await write;
    }

    private async Task DeliverAsync(ChannelReader<(byte[] Bytes, long DueTicks)> chunks, NetworkStream to)
    {
        try
        {
            await foreach (var (bytes, due) in chunks.ReadAllAsync(_stop.Token))
            {
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.Zero) await Task.Delay(wait, _stop.Token);
                await to.WriteAsync(bytes, _stop.Token);
            }
            to.Socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException or SocketException)
        {
            // the connection or the relay closed
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        lock (_connections) foreach (var connection in _connections) connection.Dispose();
        Task[] tasks;
        lock (_connections) tasks = [.. _tasks];
        await Task.WhenAll(tasks);
        _stop.Dispose();
    }
}
