using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Spa.Model.Latency;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// A spa-device process in a network namespace of its own, reaching the host's gateway across a veth pair shaped by
/// tbf, through a <see cref="DelayingRelay"/> inside the namespace that applies the link's round trip and holds each
/// chunk for its transfer time at the link's rate (the kernels we run on have no <c>sch_netem</c>; tbf caps the rate,
/// but its bucket lets messages this small through at once). The same parallel-mode completion is measured on that
/// path with the link off, on, and off again (the mean of the two off runs cancels drift): by the latency model the
/// link adds M × (round trip + bytes up / rate up + bytes down / rate down) to each token, with the bytes that really
/// cross it (the relay counts them, Orleans' framing included), and changes nothing in the text. Measures latency, so
/// CI runs it after the other tests, alone (trait Category=Timing).
/// </summary>
[Collection(ServerCollection.Name)]
[Trait("Category", "Timing")]
public sealed class EmulatedLinkTests(ServerFixture server) : IDisposable
{
    private const string Secret = "emulated-link-device-secret";
    private const int Tokens = 40;
    private const double Tolerance = 0.10;

    /// <summary>Completions run before measuring, so that the code on the path is compiled to its final tier.</summary>
    private const int WarmUps = 3;

    /// <summary>Completions per measurement, of which the median is taken.</summary>
    private const int Repeats = 3;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A slow link whose round trip dominates while the transfer of the activations still shows. Up is cloud to device
    /// (the model's bytes_up), down is device to cloud.
    /// </summary>
    private static readonly LinkProfile Link = new("netns", RoundTripMs: 40, UpMbps: 4, DownMbps: 4);

    private readonly PluginCopy _copy = new();

    public void Dispose() => _copy.Dispose();

    /// <summary>One measured completion: its text, what the response reports per generated token, and the bytes the
    /// relay carried for it in each direction.</summary>
    private sealed record Run(string Text, double Generated, double M, double TotalMs, double CloudMs, double EdgeMs, double NetworkMs,
        double BytesUp, double BytesDown, double WireUp, double WireDown)
    {
        public override string ToString() =>
            $"{TotalMs:F2} ms/token (cloud {CloudMs:F2}, edge {EdgeMs:F2}, network {NetworkMs:F2}), bytes per transmission up {BytesUp / M / Generated:F0} " +
            $"(wire {WireUp / M / Generated:F0}), down {BytesDown / M / Generated:F0} (wire {WireDown / M / Generated:F0})";
    }

    [Fact]
    public async Task ALinkAddsToEachTokenWhatTheLatencyModelSays()
    {
        var clock = Stopwatch.StartNew();
        using var client = server.Client();
        _copy.Make();

        using var link = NetworkNamespace.Create(toInsideMbps: Link.UpMbps, toHostMbps: Link.DownMbps);
        // The device dials the gateway's own address (127.0.0.1:port) inside the namespace, as Orleans clients address
        // their messages to the gateway they dialed: the relay there carries the bytes across the veth pair to one on
        // the host end, which passes them to the gateway.
        var gateway = new IPEndPoint(IPAddress.Loopback, server.GatewayPort);
        using var hostEnd = new DelayingRelay(DelayingRelay.NewTcpSocket, new IPEndPoint(link.HostAddress, 0), gateway);
        using var insideEnd = new DelayingRelay(() => link.Enter(DelayingRelay.NewTcpSocket), gateway, hostEnd.Endpoint);
        var device = await ConnectedDeviceTests.Register(client, "netns", Secret);
        await using var inside = ChildProcess.Start(link.Inside(SpaDevice.StartInfo(gateway.ToString(), device, Secret, _copy.Folder)));
        await inside.WaitForOutputAsync(SpaDevice.ConnectedLine, Bound);

        for (var i = 0; i < WarmUps; i++) await Complete(client, device);
        var before = await Measure(client, device, insideEnd);
        insideEnd.SetLink(Link.RoundTripMs, towardsTargetMbps: Link.DownMbps, backMbps: Link.UpMbps);
        var on = await Measure(client, device, insideEnd);
        insideEnd.SetLink(0, double.PositiveInfinity, double.PositiveInfinity);
        var after = await Measure(client, device, insideEnd);

        Assert.All([before, after], off => Assert.Equal(off.Text, on.Text));
        Assert.All([before, on, after], run => Assert.Equal((Tokens, 1.0), (run.Generated, run.M)));
        var offMs = (before.TotalMs + after.TotalMs) / 2;
        var perTransmission = Link.RoundTripMs + Link.UpMs(on.WireUp / on.M / on.Generated) + Link.DownMs(on.WireDown / on.M / on.Generated);
        var predicted = offMs + on.M * perTransmission;
        var activationsOnly = offMs + on.M * (Link.RoundTripMs + Link.UpMs(on.BytesUp / on.M / on.Generated) + Link.DownMs(on.BytesDown / on.M / on.Generated));
        var report = $"link on: {on}; predicted {predicted:F2} ms/token (link off {offMs:F2} + M × {perTransmission:F2}; " +
                     $"{activationsOnly:F2} counting the activations' bytes alone); link off before: {before}; after: {after}; " +
                     $"relay late by {insideEnd.MeanLateness.TotalMilliseconds:F3} ms a chunk";
        Console.WriteLine(report);
        Assert.True(on.NetworkMs >= Link.RoundTripMs, "the link's delay was not applied: " + report);
        Assert.True(Math.Abs(on.TotalMs - predicted) <= Tolerance * predicted, report);
        Assert.True(clock.Elapsed < Bound, $"took {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// The completion of median time among <see cref="Repeats"/>: one completion stalled by the machine (a collection, a
    /// descheduled thread) would otherwise move the link-off baseline, and with it the prediction, by several times.
    /// </summary>
    private static async Task<Run> Measure(HttpClient client, string device, DelayingRelay relay)
    {
        var runs = new List<Run>();
        for (int i = 0; i < Repeats; i++) runs.Add(await MeasureOnce(client, device, relay));
        return runs.OrderBy(r => r.TotalMs).ElementAt(Repeats / 2);
    }

    private static async Task<Run> MeasureOnce(HttpClient client, string device, DelayingRelay relay)
    {
        var (up, down) = (relay.BytesBack, relay.BytesTowardsTarget);
        var answer = await Complete(client, device);
        var (wireUp, wireDown) = (relay.BytesBack - up, relay.BytesTowardsTarget - down);
        var spa = answer.GetProperty("spa");
        var latency = spa.GetProperty("latency_ms");
        var generated = spa.GetProperty("generated_tokens").GetDouble();
        return new(answer.GetProperty("choices")[0].GetProperty("text").GetString()!, generated, spa.GetProperty("m").GetDouble(),
            latency.GetProperty("total").GetDouble(), latency.GetProperty("cloud").GetDouble(), latency.GetProperty("edge").GetDouble(),
            latency.GetProperty("network").GetDouble(), spa.GetProperty("bytes_up").GetDouble(), spa.GetProperty("bytes_down").GetDouble(), wireUp, wireDown);
    }

    private static Task<JsonElement> Complete(HttpClient client, string device) =>
        PluginCompletionTests.Send(client, "/v1/completions", JsonSerializer.Serialize(new
        {
            prompt = "Once upon a time",
            max_tokens = Tokens,
            spa = new { mode = "parallel", device_id = device, fallback = "fail" },
        }), HttpStatusCode.OK);
}
