using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// <c>spa device register</c>'s refusals, each one line on stderr, and registration over HTTPS with a certificate the
/// test makes (its success over HTTP is part of the Redis cluster test, against real silos).
/// </summary>
public sealed class DeviceCommandTests
{
    [Theory]
    [InlineData(2, "give --api-key or set SPA_API_KEY", "device", "register", "--device-id", "phone-1")]
    [InlineData(2, "--url must be an http:// or https:// URL", "device", "register", "--device-id", "phone-1", "--api-key", "k", "--url", "ftp://host")]
    [InlineData(2, "--tls-ca is for an https:// URL", "device", "register", "--device-id", "phone-1", "--api-key", "k", "--tls-ca", "ca.pem")]
    [InlineData(2, "--tls-ca: the file missing-ca.pem does not exist", "device", "register", "--device-id", "phone-1", "--api-key", "k", "--url", "https://127.0.0.1:1", "--tls-ca", "missing-ca.pem")]
    [InlineData(2, "--profile describes a simulated device", "device", "register", "--device-id", "phone-1", "--api-key", "k", "--profile", "phone-4g")]
    [InlineData(2, "--device-id", "device", "register", "--api-key", "k")]
    public async Task BadArgumentsAreOneLineErrors(int exitCode, string phrase, params string[] args)
    {
        var run = await Spa.RunAsync(args, environment: new Dictionary<string, string?> { ["SPA_API_KEY"] = null });
        Assert.True(run.ExitCode == exitCode, run.ToString());
        Assert.Contains(phrase, Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task ANonAnsweringServerIsOneLineAndExitCode1()
    {
        int port = Ports.Free(); // nothing listens there
        var run = await Spa.RunAsync("device", "register", "--device-id", "phone-1", "--api-key", "k", "--url", $"http://127.0.0.1:{port}");
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.StartsWith("spa device register: error:", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task ADeviceIsRegisteredOverHttpsTrustingTheGivenCertificateOnly()
    {
        using var certificate = new TestCertificate("spa-host");
        using var stranger = new TestCertificate("someone-else");
        var ports = Ports.Free(3);
        await using var server = Spa.Start(["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}", "--api-key", "tls-key",
            "--silo-port", ports[1].ToString(), "--gateway-port", ports[2].ToString(), "--tls-cert", certificate.CertificatePath, "--tls-key", certificate.KeyPath]);
        await server.WaitForOutputAsync("Serving", ServeProcess.StartTimeout);
        string[] Register(string ca) => ["device", "register", "--device-id", "tls-phone", "--api-key", "tls-key", "--url", $"https://127.0.0.1:{ports[0]}", "--tls-ca", ca];

        var registered = await Spa.RunAsync(Register(certificate.CertificatePath));
        Assert.True(registered.ExitCode == 0, registered.ToString());
        Assert.Contains("device tls-phone registered", registered.Stdout);
        var refused = await Spa.RunAsync(Register(stranger.CertificatePath));
        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains("SSL connection could not be established", Assert.Single(refused.StderrLines));
        Assert.Equal(0, await server.TerminateAsync(TimeSpan.FromSeconds(30)));
    }
}
