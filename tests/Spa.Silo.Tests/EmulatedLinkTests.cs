using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Spa.Model.Latency;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// A spa-device process in a network namespace of its own, reaching the host's gateway across a veth pair shaped by
/// tbf. The link's round trip is applied by netem where the kernel has it; where it has not (sch_netem missing), by a
/// <see cref="DelayingRelay"/> inside the namespace, which also holds each chunk for its transfer time at the link's
/// rate (tbf caps the rate, but its bucket lets messages this small through at once). A parallel-mode completion
/// through it must cost what the latency model says: the base's own time per token plus M times (round trip + transfer
/// both ways + the device's measured compute), and give the text of the same plugin on a device process outside the
/// namespace. Measures latency, so CI runs it after the other tests, alone (trait Category=Timing).
/// </summary>
[Collection(ServerCollection.Name)]
[Trait("Category", "Timing")]
public sealed class EmulatedLinkTests(ServerFixture server) : IDisposable
{
    private const string Secret = "emulated-link-device-secret";
    private const int Tokens = 40;
    private const double Tolerance = 0.10;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A slow link whose round trip dominates while the transfer of the activations still shows. Up is cloud to device
    /// (the model's bytes_up), down is device to cloud.
    /// </summary>
    private static readonly LinkProfile Link = new("netns", RoundTripMs: 40, UpMbps: 4, DownMbps: 4);

    private readonly PluginCopy _copy = new();

    public void Dispose() => _copy.Dispose();

    private static string Request(string? device) => JsonSerializer.Serialize(device is null
        ? new { prompt = "Once upon a time", max_tokens = Tokens, spa = (object)new { mode = "base" } }
        : new { prompt = "Once upon a time", max_tokens = Tokens, spa = (object)new { mode = "parallel", device_id = device, fallback = "fail" } });

    [Fact]
    public async Task ADeviceBehindAnEmulatedLinkCostsWhatTheLatencyModelPredicts()
    {
        var clock = Stopwatch.StartNew();
        using var client = server.Client();
        _copy.Make();

        var local = await ConnectedDeviceTests.Register(client, "loopback", Secret);
        JsonElement reference;
        await using (var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", local, Secret, _copy.Folder))
        {
            await device.WaitForOutputAsync(SpaDevice.ConnectedLine, Bound);
            reference = await Complete(client, local);
        }

        using var link = NetworkNamespace.Create(toInsideMbps: Link.UpMbps, toHostMbps: Link.DownMbps, Link.RoundTripMs);
        // The device dials the gateway's own address (127.0.0.1:port) inside the namespace, as Orleans clients address
        // their messages to the gateway they dialed: a relay there carries the bytes across the veth pair to a plain one
        // on the host end, which passes them to the gateway.
        var gateway = new IPEndPoint(IPAddress.Loopback, server.GatewayPort);
        await using var hostEnd = DelayingRelay.Plain(new IPEndPoint(link.HostAddress, 0), gateway);
        await using var insideEnd = link.KernelDelay
            ? new DelayingRelay(() => link.Enter(DelayingRelay.NewTcpSocket), gateway, hostEnd.Endpoint, 0, double.PositiveInfinity, double.PositiveInfinity)
            : new DelayingRelay(() => link.Enter(DelayingRelay.NewTcpSocket), gateway, hostEnd.Endpoint, Link.RoundTripMs,
                towardsTargetMbps: Link.DownMbps, backMbps: Link.UpMbps);
        var remote = await ConnectedDeviceTests.Register(client, "netns", Secret);
        await using var inside = ChildProcess.Start(link.Inside(SpaDevice.StartInfo(gateway.ToString(), remote, Secret, _copy.Folder)));
        await inside.WaitForOutputAsync(SpaDevice.ConnectedLine, Bound);

        await Complete(client, remote); // warms the path (connections, first calls) so that the measured run is steady
        var baseline = (await PluginCompletionTests.Send(client, "/v1/completions", Request(null), HttpStatusCode.OK)).GetProperty("spa");
        var (wireUp, wireDown) = (insideEnd.BytesBack, insideEnd.BytesTowardsTarget);
        var answer = await Complete(client, remote);
        (wireUp, wireDown) = (insideEnd.BytesBack - wireUp, insideEnd.BytesTowardsTarget - wireDown);
        Assert.Equal(Text(reference), Text(answer));

        var spa = answer.GetProperty("spa");
        var generated = spa.GetProperty("generated_tokens").GetDouble();
        var transmissions = spa.GetProperty("transmissions").GetDouble();
        Assert.Equal(Tokens, generated);
        Assert.Equal(1.0, spa.GetProperty("m").GetDouble());
        var latency = spa.GetProperty("latency_ms");
        var measured = latency.GetProperty("total").GetDouble();
        var roundTrip = Link.RoundTripMs
                        + Link.UpMs(spa.GetProperty("bytes_up").GetDouble() / transmissions)
                        + Link.DownMs(spa.GetProperty("bytes_down").GetDouble() / transmissions);
        var predicted = baseline.GetProperty("latency_ms").GetProperty("total").GetDouble()
                        + transmissions / generated * roundTrip
                        + latency.GetProperty("edge").GetDouble();
        var report = $"measured {measured:F2} ms/token (cloud {latency.GetProperty("cloud").GetDouble():F2}, network {latency.GetProperty("network").GetDouble():F2}), predicted {predicted:F2} (base {baseline.GetProperty("latency_ms").GetProperty("total").GetDouble():F2}, " +
                     $"round trip {roundTrip:F2}, edge {latency.GetProperty("edge").GetDouble():F2}; " +
                     $"bytes per token up {spa.GetProperty("bytes_up").GetDouble() / generated:F0} (wire {wireUp / generated:F0}), " +
                     $"down {spa.GetProperty("bytes_down").GetDouble() / generated:F0} (wire {wireDown / generated:F0}); delay by {(link.KernelDelay ? "netem" : "relay")})";
        Assert.True(latency.GetProperty("network").GetDouble() >= Link.RoundTripMs, "the link's delay was not applied: " + report);
        Assert.True(Math.Abs(measured - predicted) <= Tolerance * predicted, report);
        Console.WriteLine(report);
        Assert.True(clock.Elapsed < Bound, $"took {clock.Elapsed.TotalSeconds:F1} s");
    }

    private static Task<JsonElement> Complete(HttpClient client, string device) =>
        PluginCompletionTests.Send(client, "/v1/completions", Request(device), HttpStatusCode.OK);

    private static string Text(JsonElement body) => body.GetProperty("choices")[0].GetProperty("text").GetString()!;
}
