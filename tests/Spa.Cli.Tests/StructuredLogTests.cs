using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// `spa serve` with structured logs (Logging:Console:FormatterName json, as the Kubernetes manifest sets it): every line
/// on stdout is one JSON object with the values a client sent as their own properties, so that no id can start a line
/// that reads like another user's; and an id that tries (a newline in it) is refused before anything logs it.
/// </summary>
public sealed class StructuredLogTests
{
    [Fact]
    public async Task EveryLogLineIsOneJsonObjectWithTheClientsValuesAsProperties()
    {
        var ports = Ports.Free(3);
        await using var serve = Spa.Start(["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}", "--api-key", ServeProcess.Key,
            "--silo-port", ports[1].ToString(), "--gateway-port", ports[2].ToString()], new Dictionary<string, string?> { ["Logging__Console__FormatterName"] = "json" });
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports[0]}") };
        http.DefaultRequestHeaders.Authorization = new("Bearer", ServeProcess.Key);
        await ServeProcess.WaitUntilHealthy(serve, http);

        const string forged = "phone-a\n{\"LogLevel\":\"Information\",\"Message\":\"device phone-b of mallory registered\"}";
        using (var refused = await http.PostAsJsonAsync("/v1/devices", new { device_id = forged, secret = "x7Gq-2mVw9Lr_4Tz" }))
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        string device = "phone-" + Guid.NewGuid().ToString("N")[..8];
        using (var registered = await http.PostAsJsonAsync("/v1/devices", new { device_id = device, secret = "x7Gq-2mVw9Lr_4Tz" }))
            Assert.Equal(HttpStatusCode.Created, registered.StatusCode);

        await Eventually.True(() => Task.FromResult(serve.Stdout.Contains(device, StringComparison.Ordinal)), TimeSpan.FromSeconds(10), "the registration to be logged");
        Assert.Equal(0, await serve.TerminateAsync(TimeSpan.FromSeconds(30)));
        var lines = serve.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var entries = lines.Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.All(entries, entry => Assert.True(entry.TryGetProperty("Message", out _), entry.ToString()));
        var registration = Assert.Single(entries, e => e.GetProperty("Message").GetString()!.Contains(" registered", StringComparison.Ordinal));
        Assert.Equal(device, registration.GetProperty("State").GetProperty("Device").GetString());
        Assert.DoesNotContain(entries, e => e.GetProperty("Message").GetString()!.Contains("mallory", StringComparison.Ordinal));
    }
}
