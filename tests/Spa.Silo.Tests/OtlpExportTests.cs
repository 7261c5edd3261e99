using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Spa.Grains;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// A silo configured with <c>Spa:Telemetry:OtlpEndpoint</c>, or with the standard <c>OTEL_EXPORTER_OTLP_*</c>
/// variables, posts its traces (http/protobuf) to a real receiver on loopback: the requests arrive at
/// <c>/v1/traces</c> and carry the span and event names of a real completion.
/// </summary>
public sealed class OtlpExportTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TracesOfACompletionReachTheOtlpReceiver(bool standardVariables)
    {
        await using var receiver = await OtlpReceiver.Start();
        var server = standardVariables
            ? ServerFixture.With(("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.BaseAddress), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
            : ServerFixture.With(("Spa__Telemetry__OtlpEndpoint", receiver.BaseAddress));
        await server.InitializeAsync();
        try
        {
            using var client = server.Client();
            var device = await PluginCompletionTests.SimulatedDevice(client, "otlp", RandomPlugin.Ladder);
            await PluginCompletionTests.Send(client, "/v1/completions",
                JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 6, spa = new { mode = "parallel", device_id = device } }), HttpStatusCode.OK);
        }
        finally
        {
            await server.DisposeAsync(); // stopping the host flushes the exporter's batch
        }

        Assert.NotEmpty(receiver.Requests);
        Assert.All(receiver.Requests, r =>
        {
            Assert.Equal("/v1/traces", r.Path);
            Assert.Equal("application/x-protobuf", r.ContentType);
        });
        // Span and event names travel as UTF-8 strings inside the protobuf.
        var bodies = receiver.Requests.SelectMany(r => r.Body).ToArray();
        // The completion's span is named as the GenAI semantic conventions name inference spans: operation, then model.
        foreach (var name in new[] { "text_completion stories260K", SpaTracing.Generation, SpaTracing.Token, SpaTracing.RoundTrip })
            Assert.True(bodies.AsSpan().IndexOf(Encoding.UTF8.GetBytes(name)) >= 0, $"no exported trace carries '{name}'");
    }
}

/// <summary>An OTLP/HTTP receiver on a free loopback port: keeps every request and answers 200 with an empty protobuf body.</summary>
internal sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    private OtlpReceiver(WebApplication app) => _app = app;

    public ConcurrentQueue<(string Path, string? ContentType, byte[] Body)> Requests { get; } = new();

    public string BaseAddress => _app.Urls.Single();

    public static async Task<OtlpReceiver> Start()
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var receiver = new OtlpReceiver(app);
        app.MapPost("/{**path}", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            receiver.Requests.Enqueue((context.Request.Path, context.Request.ContentType, body.ToArray()));
            context.Response.ContentType = "application/x-protobuf";
        });
        await app.StartAsync();
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
