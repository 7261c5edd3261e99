using System.Net;
using System.Security.Authentication;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// TLS on a real host with a self-signed certificate the test makes: HTTPS completions for a client that trusts it,
/// refusals for plain HTTP and for a client that does not trust it; a real spa-device that connects to the gateway
/// over TLS and serves a plugin request exactly as the simulated device with the same plugin does; a device that
/// does not trust the certificate, or speaks plain TCP, never connects.
/// </summary>
public sealed class TlsTests : IDisposable
{
    private const string Secret = "tls-device-secret-0123456789";
    private readonly TestCertificate _certificate = new("spa-gateway");
    private readonly TestCertificate _stranger = new("someone-else");
    private readonly PluginCopy _copy = new();

    public void Dispose()
    {
        _certificate.Dispose();
        _stranger.Dispose();
        _copy.Dispose();
    }

    [Fact]
    public async Task HttpsServesATrustingClientAndRefusesPlainHttpAndAnUntrustingClient()
    {
        await using var server = ServerFixture.WithTls(_certificate);
        await server.InitializeAsync();
        Assert.Equal("https", server.BaseAddress.Scheme);

        using var client = server.Client();
        var body = await PluginCompletionTests.Send(client, "/v1/completions", """{"prompt": "Once upon a time", "max_tokens": 20}""", HttpStatusCode.OK);
        Assert.Equal(Reference.Generate("Once upon a time", 20).Text, body.GetProperty("choices")[0].GetProperty("text").GetString());

        using var plain = new HttpClient { BaseAddress = new UriBuilder(server.BaseAddress) { Scheme = "http" }.Uri, Timeout = TimeSpan.FromSeconds(20) };
        plain.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
        await Assert.ThrowsAsync<HttpRequestException>(() => plain.GetAsync("/v1/models"));

        using var untrusting = server.Client(trusted: _stranger.Certificate);
        var refused = await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync("/v1/models"));
        Assert.IsType<AuthenticationException>(refused.InnerException);
    }

    [Fact]
    public async Task ADeviceConnectsOverTlsAndServesWhileUntrustingAndPlainDevicesAreRefused()
    {
        await using var server = ServerFixture.WithTls(_certificate);
        await server.InitializeAsync();
        using var client = server.Client();
        var simulated = await PluginCompletionTests.SimulatedDevice(client, "sim", RandomPlugin.Ladder);
        var expected = await PluginCompletionTests.Send(client, "/v1/completions", Request(simulated), HttpStatusCode.OK);

        var id = await ConnectedDeviceTests.Register(client, "tls", Secret);
        _copy.Make();
        var gateway = $"127.0.0.1:{server.GatewayPort}";
        // Each keeps trying for 10 s (a device that connects at all does so in well under a second here), then gives up.
        await using (var untrusting = SpaDevice.Start(gateway, id, Secret, _copy.Folder, 2, "--tls-ca", _stranger.CertificatePath, "--connect-timeout-seconds", "10"))
        await using (var plain = SpaDevice.Start(gateway, id, Secret, _copy.Folder, 2, "--connect-timeout-seconds", "10"))
        {
            Assert.Equal(1, await untrusting.WaitForExitAsync(TimeSpan.FromSeconds(90)));
            Assert.Contains("spa-device: error: could not reach the cluster", untrusting.Stderr);
            Assert.Equal(1, await plain.WaitForExitAsync(TimeSpan.FromSeconds(90)));
            Assert.Contains("spa-device: error: could not reach the cluster", plain.Stderr);
        }
        Assert.Equal("offline", await ConnectedDeviceTests.State(client, id));

        await using var device = SpaDevice.Start(gateway, id, Secret, _copy.Folder, 2, "--tls-ca", _certificate.CertificatePath);
        await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
        Assert.Contains(" over TLS", device.Stdout);
        var answer = await PluginCompletionTests.Send(client, "/v1/completions", Request(id), HttpStatusCode.OK);
        Assert.Equal(PluginCompletionTests.Text(expected), PluginCompletionTests.Text(answer));
        Assert.Equal(24, answer.GetProperty("spa").GetProperty("transmissions").GetInt64()); // every token asked the device, none fell back
        Assert.False(answer.GetProperty("spa").GetProperty("degraded").GetBoolean());
    }

    private static string Request(string device) =>
        JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 24, spa = new { mode = "parallel", device_id = device, fallback = "fail" } });
}

/// <summary>TLS settings: from the command line or Spa:Tls, and a clear one-line error for each file that cannot serve.</summary>
public sealed class TlsOptionsTests : IDisposable
{
    private readonly TestCertificate _certificate = new();
    private readonly string _garbage = Path.GetTempFileName();

    public void Dispose()
    {
        _certificate.Dispose();
        File.Delete(_garbage);
    }

    private static SiloHostOptions With(string? cert, string? key = null, string? http = null) =>
        new() { Model = SharedData.Stories260K, TlsCertificate = cert, TlsKey = key, Http = http };

    [Fact]
    public void TheCertificateComesFromTheCommandLineOrTheConfiguration()
    {
        var parsed = SiloHostOptionsTests.ReadSiloArguments("--tls-cert", "c.pem", "--tls-key=k.pem");
        Assert.Equal(("c.pem", "k.pem"), (parsed.TlsCertificate, parsed.TlsKey));
        var configured = new SiloHostOptions { Model = "m" }.WithConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection([new("Spa:Tls:CertificatePath", _certificate.CertificatePath), new("Spa:Tls:KeyPath", _certificate.KeyPath)]).Build());
        Assert.Equal((_certificate.CertificatePath, _certificate.KeyPath), (configured.TlsCertificate, configured.TlsKey));
        var (loaded, trusted) = configured.LoadTls()!.Value;
        Assert.Equal(_certificate.Certificate.Thumbprint, loaded.Thumbprint);
        Assert.True(loaded.HasPrivateKey);
        Assert.Equal(_certificate.Certificate.Thumbprint, Assert.Single(trusted).Thumbprint); // silos that share the certificate trust each other
        Assert.Equal("https://127.0.0.1:8443", SiloHostOptions.ToUrl("127.0.0.1:8443", tls: true));
        Assert.Null(With(null).LoadTls());
    }

    [Fact]
    public void BadCertificatesAreOneLineErrors()
    {
        File.WriteAllText(_garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
        string Error(SiloHostOptions options) => Assert.Throws<ArgumentException>(() => { options.Validate(); options.LoadTls(); }).Message;

        Assert.Contains("--tls-cert (Spa:Tls:CertificatePath): the file /no/such/cert.pem does not exist", Error(With("/no/such/cert.pem")));
        Assert.Contains("--tls-key (Spa:Tls:KeyPath): the file /no/such/key.pem does not exist", Error(With(_certificate.CertificatePath, "/no/such/key.pem")));
        Assert.Contains($"cannot read the certificate {_garbage}", Error(With(_garbage, _certificate.KeyPath)));
        Assert.Contains("has no private key", Error(With(_certificate.CertificatePath)));
        Assert.Contains("need --tls-cert", Error(With(null, _certificate.KeyPath)));
        Assert.Contains("TLS is on", Error(With(_certificate.CertificatePath, _certificate.KeyPath, "http://127.0.0.1:8080")));
        Assert.Contains("--tls-ca: the file /no/such/ca.pem does not exist", Assert.Throws<ArgumentException>(() => Spa.Edge.TransportCertificates.LoadTrust("/no/such/ca.pem", "--tls-ca")).Message);
    }
}
