using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Spa.Grains;
using Spa.Model.Plugins;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// The traces of a real completion through the real silo, seen by an <see cref="ActivityListener"/>: one completion,
/// one generation in the same trace (carried across the grain call), one token step per generated token, and one
/// round-trip event per transmission the response reports, with the bytes it reports.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class TracingTests(ServerFixture server)
{
    [Theory]
    [InlineData("spa", PluginKind.Ladder, "SideNetwork")]
    [InlineData("lora", PluginKind.Lora, "LoraAttention")]
    public async Task AGenerationIsTracedTokenByTokenWithEachRoundTrip(string mode, PluginKind kind, string callKind)
    {
        using var spans = new RecordedActivities(SpaTelemetry.ActivitySourceName, "Microsoft.Orleans.Application");
        using var client = server.Client();
        var device = await PluginCompletionTests.SimulatedDevice(client, "traced", RandomPlugin.Of(kind));
        var body = await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 12, spa = new { mode, device_id = device } }), HttpStatusCode.OK);
        var session = body.GetProperty("id").GetString()!["cmpl-".Length..];
        var spa = body.GetProperty("spa");
        long tokens = spa.GetProperty("generated_tokens").GetInt64(), transmissions = spa.GetProperty("transmissions").GetInt64();
        Assert.True(transmissions > 0, "the device was never asked");

        // The completion's activity ends after its response is written: wait for it, boundedly.
        var completion = await spans.Single(SpaTracing.Completion, session);
        Assert.Equal("text_completion stories260K", completion.DisplayName);
        Assert.Equal(("text_completion", "spa_orleans", "stories260K"),
            (completion.GetTagItem("gen_ai.operation.name"), completion.GetTagItem("gen_ai.provider.name"), completion.GetTagItem("gen_ai.request.model")));
        Assert.Equal((int)tokens, completion.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal(body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), completion.GetTagItem("gen_ai.usage.input_tokens"));
        Assert.Equal([body.GetProperty("choices")[0].GetProperty("finish_reason").GetString()!], (string[])completion.GetTagItem("gen_ai.response.finish_reasons")!);
        Assert.Equal(body.GetProperty("id").GetString(), completion.GetTagItem("gen_ai.response.id"));
        var generation = await spans.Single(SpaTracing.Generation, session);
        Assert.Equal(completion.TraceId, generation.TraceId);
        Assert.Equal(mode, generation.GetTagItem("spa.mode"));
        Assert.Equal(tokens, generation.GetTagItem("spa.generated_tokens"));

        var steps = spans.Stopped.Where(a => a.OperationName == SpaTracing.Token && a.ParentSpanId == generation.SpanId).ToList();
        Assert.Equal(tokens, steps.Count);
        Assert.Equal(Enumerable.Range(0, (int)tokens), steps.Select(s => (int)s.GetTagItem("spa.token_index")!).Order());
        Assert.All(steps, s => Assert.Equal(generation.TraceId, s.TraceId));

        var trips = steps.SelectMany(s => s.Events).Where(e => e.Name == SpaTracing.RoundTrip).ToList();
        Assert.Equal(transmissions, trips.Count);
        Assert.Equal(transmissions, steps.Sum(s => (long)s.GetTagItem("spa.transmissions")!));
        long Tag(ActivityEvent e, string name) => Convert.ToInt64(e.Tags.Single(t => t.Key == name).Value);
        Assert.Equal(spa.GetProperty("bytes_up").GetInt64(), trips.Sum(e => Tag(e, "spa.bytes_up")));
        Assert.Equal(spa.GetProperty("bytes_down").GetInt64(), trips.Sum(e => Tag(e, "spa.bytes_down")));
        Assert.All(trips, e => Assert.Equal(callKind, e.Tags.Single(t => t.Key == "spa.call_kind").Value));
        if (mode == "spa")
        {
            // The gate decides every token; the ones it sent to the device are the transmissions.
            Assert.All(steps, s => Assert.Contains(s.GetTagItem("spa.gate"), new object[] { "edge", "cloud" }));
            Assert.Equal(transmissions, steps.Count(s => (string?)s.GetTagItem("spa.gate") == "edge"));
        }
        else
        {
            // A split plugin is asked inside every layer, once per layer, for every token.
            using var models = await client.GetAsync("/v1/models");
            int layers = JsonDocument.Parse(await models.Content.ReadAsStringAsync()).RootElement.GetProperty("data")[0].GetProperty("layers").GetInt32();
            Assert.All(steps, s => Assert.Equal(Enumerable.Range(0, layers),
                s.Events.Where(e => e.Name == SpaTracing.RoundTrip).Select(e => (int)Tag(e, "spa.layer")).Order()));
        }
    }
}

/// <summary>Every activity of the named sources that stops while this listens.</summary>
internal sealed class RecordedActivities : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentQueue<Activity> _stopped = new();

    public RecordedActivities(params string[] sources)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => sources.Contains(source.Name),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public IReadOnlyCollection<Activity> Stopped => _stopped;

    /// <summary>The one activity named <paramref name="name"/> of session <paramref name="session"/>, waiting up to 10 s for it to stop.</summary>
    public async Task<Activity> Single(string name, string session)
    {
        var found = await Eventually.Until(() => Task.FromResult(_stopped.Where(a => a.OperationName == name && (string?)a.GetTagItem("spa.session") == session).ToList()),
            stopped => stopped.Count > 0, TimeSpan.FromSeconds(10), $"activity '{name}' of session '{session}' to stop", TimeSpan.FromMilliseconds(20));
        return Assert.Single(found);
    }

    public void Dispose() => _listener.Dispose();
}
