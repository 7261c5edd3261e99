using System.Net;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Spa.Testing;
using StackExchange.Redis;

namespace Spa.Cli.Tests;

/// <summary>
/// A <c>spa serve --redis</c> (or silo program) process of a test's cluster and an HTTP client for it that sends
/// <see cref="Key"/>.
/// </summary>
public sealed record ServeProcess(ChildProcess Process, HttpClient Http, int SiloPort) : IAsyncDisposable
{
    public const string Key = "redis-test-key";

    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Starts a silo joining the cluster in <paramref name="redis"/> (its membership table and grain state), serving
    /// sessions of <paramref name="shards"/> shards: <c>spa serve</c>, or with <paramref name="siloProgram"/> the silo
    /// program, which takes the same options.
    /// </summary>
    public static ServeProcess Start(string redis, int http, int siloPort, int gatewayPort, IReadOnlyDictionary<string, string?>? environment = null,
        int shards = 1, bool siloProgram = false)
    {
        string[] options = ["--model", SharedData.Stories260K, "--http", $"127.0.0.1:{http}", "--api-key", Key, "--shards", shards.ToString(),
            "--redis", redis, "--silo-port", siloPort.ToString(), "--gateway-port", gatewayPort.ToString()];
        var process = siloProgram ? Spa.Start(options, environment, Spa.SiloDll) : Spa.Start(["serve", .. options], environment);
        var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}"), Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new("Bearer", Key);
        return new ServeProcess(process, client, siloPort);
    }

    /// <summary>An Orleans client of the cluster in <paramref name="redis"/> (the default cluster and service id, spa), not started.</summary>
    public static IHost Client(string redis) => new HostBuilder()
        .UseOrleansClient(client => client
            .UseRedisClustering(options => options.ConfigurationOptions = ConfigurationOptions.Parse(redis))
            .Configure<ClusterOptions>(options => (options.ClusterId, options.ServiceId) = ("spa", "spa")))
        .Build();

    public Task WaitUntilHealthy() => WaitUntilHealthy(Process, Http);

    /// <summary>Waits until <paramref name="process"/>, a <c>spa serve</c>, answers <c>/healthz</c> through <paramref name="http"/>.</summary>
    public static Task WaitUntilHealthy(ChildProcess process, HttpClient http) =>
        Eventually.True(async () =>
        {
            Assert.False(process.HasExited, $"spa serve exited with {(process.HasExited ? process.ExitCode : 0)} before it was healthy\n{process}");
            using var response = await http.GetAsync("/healthz");
            return response.StatusCode == HttpStatusCode.OK;
        }, StartTimeout, "spa serve to become healthy", TimeSpan.FromMilliseconds(200), retryOn: e => e is HttpRequestException, context: process.ToString);

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Process.DisposeAsync();
    }
}
