using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// <c>spa device register</c>'s refusals, each one line on stderr (its success is part of the Redis cluster test,
/// against real silos).
/// </summary>
public sealed class DeviceCommandTests
{
    [Theory]
    [InlineData(2, "give --api-key or set SPA_API_KEY", "device", "register", "--device-id", "phone-1")]
    [InlineData(2, "--url must be an http(s) address", "device", "register", "--device-id", "phone-1", "--api-key", "k", "--url", "ftp://host")]
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
}
