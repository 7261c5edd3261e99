using System.Globalization;
using System.Text.Json;
using Spa.Testing;

namespace Spa.LoadTest.Tests;

/// <summary>spa-load against a cluster it did not start: a real `spa serve` process, reached over its Orleans gateway.</summary>
public sealed class RunningClusterTests
{
    [Fact]
    public async Task ARunningClusterIsLoadedThroughItsGateway()
    {
        var ports = Ports.Free(3);
        await using var serve = SpaLoad.Start(SpaLoad.SpaDll, ["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}",
            "--silo-port", ports[1].ToString(CultureInfo.InvariantCulture), "--gateway-port", ports[2].ToString(CultureInfo.InvariantCulture),
            "--api-key", "a-key-for-the-load-test"]);
        await serve.WaitForOutputAsync("Serving stories260K", TimeSpan.FromSeconds(60));

        var json = Path.Combine(Path.GetTempPath(), $"spa-load-cluster-{Guid.NewGuid():N}.json");
        try
        {
            await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(120), "--cluster", $"127.0.0.1:{ports[2]}", "--model", SharedData.Stories260K,
                "--devices", "2", "--concurrency", "2", "--duration", "20", "--requests", "3", "--warmup", "0.3", "--max-tokens", "4", "--modes", "base,parallel",
                "--profiles", "laptop-wifi", "--json", json, "--no-plots");
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.Contains("cluster at 127.0.0.1:", run.Stdout);
            var modes = JsonDocument.Parse(await File.ReadAllTextAsync(json)).RootElement.GetProperty("modes").EnumerateArray().ToList();
            Assert.Equal(["base", "parallel"], modes.Select(m => m.GetProperty("mode").GetString()));
            foreach (var mode in modes)
            {
                Assert.Equal(3, mode.GetProperty("requests").GetInt32()); // the request bound ends each mode long before its 20 s
                Assert.Equal(0, mode.GetProperty("errors").GetInt32());
            }
            Assert.Equal(1, modes[1].GetProperty("m").GetDouble());
        }
        finally
        {
            foreach (var file in Directory.GetFiles(Path.GetTempPath(), Path.GetFileNameWithoutExtension(json) + "*")) File.Delete(file);
        }
        Assert.Equal(0, await serve.TerminateAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task AClusterThatDoesNotAnswerIsOneLine()
    {
        await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(90), "--cluster", $"127.0.0.1:{Ports.Free()}", "--model", SharedData.Stories260K,
            "--devices", "1", "--concurrency", "1", "--duration", "1", "--modes", "base");
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains("could not reach the cluster at 127.0.0.1:", run.Stderr);
    }

    [Fact]
    public async Task AClusterBehindTlsIsLoadedWithItsCertificateTrusted()
    {
        using var certificate = new TestCertificate("spa-gateway");
        var ports = Ports.Free(3);
        await using var serve = SpaLoad.Start(SpaLoad.SpaDll, ["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}",
            "--silo-port", ports[1].ToString(CultureInfo.InvariantCulture), "--gateway-port", ports[2].ToString(CultureInfo.InvariantCulture),
            "--api-key", "a-key-for-the-load-test", "--tls-cert", certificate.CertificatePath, "--tls-key", certificate.KeyPath]);
        await serve.WaitForOutputAsync("Serving stories260K", TimeSpan.FromSeconds(60));

        var json = Path.Combine(Path.GetTempPath(), $"spa-load-tls-{Guid.NewGuid():N}.json");
        try
        {
            // The load tester's own client and its device process both speak TLS to the gateway.
            await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(180), "--cluster", $"127.0.0.1:{ports[2]}", "--tls-ca", certificate.CertificatePath,
                "--model", SharedData.Stories260K, "--devices", "1", "--concurrency", "1", "--duration", "20", "--requests", "2", "--warmup", "0.3",
                "--max-tokens", "4", "--modes", "parallel", "--device-processes", "--json", json, "--no-plots");
            Assert.True(run.ExitCode == 0, run.ToString());
            var mode = Assert.Single(JsonDocument.Parse(await File.ReadAllTextAsync(json)).RootElement.GetProperty("modes").EnumerateArray());
            Assert.Equal((2, 0, 1.0), (mode.GetProperty("requests").GetInt32(), mode.GetProperty("errors").GetInt32(), mode.GetProperty("m").GetDouble()));
        }
        finally
        {
            foreach (var file in Directory.GetFiles(Path.GetTempPath(), Path.GetFileNameWithoutExtension(json) + "*")) File.Delete(file);
        }

        await using var plain = await SpaLoad.RunAsync(TimeSpan.FromSeconds(90), "--cluster", $"127.0.0.1:{ports[2]}", "--model", SharedData.Stories260K,
            "--devices", "1", "--concurrency", "1", "--duration", "1", "--modes", "base");
        Assert.True(plain.ExitCode == 1, plain.ToString());
        Assert.Contains("could not reach the cluster", plain.Stderr);
        Assert.Equal(0, await serve.TerminateAsync(TimeSpan.FromSeconds(30)));
    }
}
