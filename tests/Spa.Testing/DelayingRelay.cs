using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Spa.Testing;

/// <summary>
/// A TCP relay that emulates a link's latency where the kernel cannot (no <c>sch_netem</c>): it listens on
/// <see cref="Endpoint"/>, forwards every connection to its target, and delivers each chunk it reads one-way delay
/// later, after the chunk's transfer time at the direction's rate (behind the chunks before it, so order and the
/// link's serialization are kept). The link starts off (no delay, no rate limit) and <see cref="SetLink"/> changes it
/// between requests, so that one path can be measured without and with the link. The bytes still cross whatever lies
/// between the client and the relay (a veth pair, its tbf shaping).
/// </summary>
/// <remarks>
/// Each direction of a connection has a reading thread and a delivering thread of its own, with blocking sockets: a
/// chunk is timestamped when it arrives and written when it is due, not when a busy thread pool gets round to it.
/// The threads run at the highest priority (nice -20, which needs root, as the namespace does): the relay stands in
/// for the kernel's netem, which no process competes with.
/// </remarks>
public sealed class DelayingRelay : IDisposable
{
    private static readonly TimeSpan SleepMargin = TimeSpan.FromMilliseconds(1);

    private readonly Socket _listener;
    private readonly Func<Socket> _newSocket;
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Thread> _threads = [];
    private readonly List<Socket> _connections = [];

    private volatile Shape _shape = new(0, double.PositiveInfinity, double.PositiveInfinity);
    private long _bytesTowardsTarget;
    private long _bytesBack;
    private long _chunks;
    private long _latenessTicks;

    private sealed record Shape(double OneWaySeconds, double TowardsTargetBitsPerSecond, double BackBitsPerSecond);

    /// <param name="newSocket">Makes a TCP socket, both the listening one and those that connect to the target (in the
    /// network namespace the relay is to live in).</param>
    public DelayingRelay(Func<Socket> newSocket, IPEndPoint listen, IPEndPoint target)
    {
        _newSocket = newSocket;
        _target = target;
        _listener = newSocket();
        _listener.Bind(listen);
        _listener.Listen();
        Start(Accept, "relay accept");
    }

    /// <summary>Bytes relayed towards the target so far (framing included: what crosses the wire).</summary>
    public long BytesTowardsTarget => Interlocked.Read(ref _bytesTowardsTarget);

    /// <summary>Bytes relayed back from the target so far.</summary>
    public long BytesBack => Interlocked.Read(ref _bytesBack);

    /// <summary>How late, on average, chunks were written after they were due (the emulation's own error).</summary>
    public TimeSpan MeanLateness => Interlocked.Read(ref _chunks) == 0
        ? TimeSpan.Zero
        : Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _latenessTicks) / Interlocked.Read(ref _chunks));

    public IPEndPoint Endpoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>Applies a link to the chunks read from now on: <paramref name="roundTripMs"/> of delay (half each way),
    /// <paramref name="towardsTargetMbps"/> from the connecting side to the target, <paramref name="backMbps"/> back.</summary>
    public void SetLink(double roundTripMs, double towardsTargetMbps, double backMbps) =>
        _shape = new(roundTripMs / 2000, towardsTargetMbps * 1e6, backMbps * 1e6);

    public static Socket NewTcpSocket() => new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };

    private Thread Start(Action run, string name)
    {
        var thread = new Thread(() =>
        {
            const int processPriority = 0; // PRIO_PROCESS: with a thread id, the one thread
            if (setpriority(processPriority, gettid(), -20) != 0)
                throw new InvalidOperationException($"setpriority failed with errno {Marshal.GetLastPInvokeError()} (the relay needs root)");
            run();
        }) { IsBackground = true, Name = name };
        lock (_threads) _threads.Add(thread);
        thread.Start();
        return thread;
    }

    private void Accept()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client, server;
            try
            {
                client = _listener.Accept();
            }
            catch (Exception e) when (e is ObjectDisposedException or SocketException)
            {
                return;
            }
            server = _newSocket();
            try
            {
                server.Connect(_target);
            }
            catch (SocketException)
            {
                client.Dispose(); // the target is gone: the client sees its connection closed, as it would without a relay
                server.Dispose();
                continue;
            }
            client.NoDelay = true;
            lock (_connections) _connections.AddRange([client, server]);
            Pump(client, server, towardsTarget: true);
            Pump(server, client, towardsTarget: false);
        }
    }

    private void Pump(Socket from, Socket to, bool towardsTarget)
    {
        var chunks = new BlockingCollection<(byte[] Bytes, long DueTicks)>();
        Start(() => Read(from, chunks, towardsTarget), "relay read");
        Start(() => Deliver(chunks, to), "relay deliver");
    }

    private void Read(Socket from, BlockingCollection<(byte[] Bytes, long DueTicks)> chunks, bool towardsTarget)
    {
        var buffer = new byte[64 * 1024];
        var lineFreeAt = 0L;
        try
        {
            int read;
            while ((read = from.Receive(buffer)) > 0)
            {
                var now = Stopwatch.GetTimestamp();
                var shape = _shape;
                var bitsPerSecond = towardsTarget ? shape.TowardsTargetBitsPerSecond : shape.BackBitsPerSecond;
                Interlocked.Add(ref towardsTarget ? ref _bytesTowardsTarget : ref _bytesBack, read);
                lineFreeAt = Math.Max(now, lineFreeAt) + (long)(read * 8 / bitsPerSecond * Stopwatch.Frequency);
                chunks.Add((buffer[..read], lineFreeAt + (long)(shape.OneWaySeconds * Stopwatch.Frequency)));
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
        {
            // the connection or the relay closed
        }
        chunks.CompleteAdding();
    }

    private void Deliver(BlockingCollection<(byte[] Bytes, long DueTicks)> chunks, Socket to)
    {
        try
        {
            foreach (var (bytes, due) in chunks.GetConsumingEnumerable(_stop.Token))
            {
                WaitUntil(due);
                Interlocked.Add(ref _latenessTicks, Stopwatch.GetTimestamp() - due);
                Interlocked.Increment(ref _chunks);
                to.Send(bytes);
            }
            to.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // the connection or the relay closed
        }
    }

    /// <summary>Sleeps to within <see cref="SleepMargin"/> of <paramref name="due"/> (a sleep counts whole milliseconds
    /// and may wake late), then yields until it is due.</summary>
    private static void WaitUntil(long due)
    {
        while (Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due) is var left && left > TimeSpan.Zero)
        {
            if (left > SleepMargin) Thread.Sleep(left - SleepMargin);
            else Thread.Yield();
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int setpriority(int which, int who, int priority);

    [DllImport("libc")]
    private static extern int gettid();

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_connections) foreach (var connection in _connections) connection.Dispose();
        Thread[] threads;
        lock (_threads) threads = [.. _threads];
        foreach (var thread in threads) thread.Join(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}
