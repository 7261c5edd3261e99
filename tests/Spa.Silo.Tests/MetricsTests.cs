using System.Net;
using System.Text.Json;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// <c>GET /metrics</c> after real generations (base, parallel, spa): every documented metric is there, beside Orleans'
/// and the runtime's, and the counters grew by exactly what the responses report.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class MetricsTests(ServerFixture server)
{
    private static readonly string[] Documented =
    [
        "spa_tokens_generated_total", "spa_edge_transmissions_total", "spa_edge_transmissions_failed_total", "spa_edge_bytes_total", "spa_gate_decisions_total",
        "spa_token_latency_seconds", "spa_time_to_first_token_seconds", "spa_sessions_active", "spa_kv_cache_bytes",
        "spa_kv_cache_evictions_total", "spa_batch_size", "spa_queue_wait_seconds", "spa_requests_total",
        "spa_edge_devices_connected", "spa_edge_fallbacks_total", "spa_admission_running", "spa_admission_queued", "spa_admission_kv_bytes",
        "spa_memory_trims_total", "spa_memory_trim_released_total", "spa_memory_storage_entries", "spa_memory_storage_bytes",
        "gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_per_output_token_seconds", "gen_ai_server_request_duration_seconds",
        "gen_ai_client_token_usage", "spa_finish_reasons_total", "spa_admission_wait_seconds",
    ];

    [Fact]
    public async Task TheScrapeHasEveryMetricAndCountsWhatTheResponsesReport()
    {
        using var client = server.Client();
        var id = await PluginCompletionTests.SimulatedDevice(client, "metrics", RandomPlugin.Ladder);
        var before = await Scrape();

        var plain = (await PluginCompletionTests.Send(client, "/v1/completions", """{"prompt": "Once upon a time", "max_tokens": 12}""", HttpStatusCode.OK)).GetProperty("spa");
        var parallel = (await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 12, spa = new { mode = "parallel", device_id = id } }), HttpStatusCode.OK)).GetProperty("spa");
        var gated = (await PluginCompletionTests.Send(client, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 12, spa = new { mode = "spa", device_id = id } }), HttpStatusCode.OK)).GetProperty("spa");
        var after = await Scrape();

        foreach (var name in Documented)
            Assert.True(after.Has(name), $"/metrics lacks {name}");
        Assert.Contains(after.Samples, s => s.Name.StartsWith("orleans_", StringComparison.Ordinal));
        Assert.Contains(after.Samples, s => s.Name.StartsWith("dotnet_", StringComparison.Ordinal));

        double Grew(string name, params (string Label, string Value)[] labels) => after.Sum(name, labels) - before.Sum(name, labels);
        long Field(JsonElement spa, string field) => spa.GetProperty(field).GetInt64();
        long Both(string field) => Field(parallel, field) + Field(gated, field);
        long tokens = Field(plain, "generated_tokens") + Both("generated_tokens");
        Assert.Equal(tokens, Grew("spa_tokens_generated_total"));
        Assert.Equal(Field(parallel, "generated_tokens"), Grew("spa_tokens_generated_total", ("mode", "parallel")));
        Assert.True(Field(parallel, "transmissions") > 0);
        Assert.Equal(Field(parallel, "transmissions"), Grew("spa_edge_transmissions_total", ("mode", "parallel")));
        Assert.Equal(Field(gated, "transmissions"), Grew("spa_edge_transmissions_total", ("mode", "spa")));
        Assert.Equal(Both("failed_transmissions"), Grew("spa_edge_transmissions_failed_total"));
        Assert.Equal(Both("bytes_up"), Grew("spa_edge_bytes_total", ("direction", "up")));
        Assert.Equal(Both("bytes_down"), Grew("spa_edge_bytes_total", ("direction", "down")));
        // The gate decides every token of the gated generation; the ones it sends to the edge are its transmissions.
        Assert.Equal(Field(gated, "transmissions"), Grew("spa_gate_decisions_total", ("choice", "edge")));
        Assert.Equal(Field(gated, "generated_tokens"), Grew("spa_gate_decisions_total"));
        Assert.Equal(3, Grew("spa_requests_total", ("status", "200")));
        Assert.Equal(3, Grew("spa_time_to_first_token_seconds_count"));
        // One total and one cloud share per token; edge and network only for the tokens that went to the device.
        Assert.Equal(tokens, Grew("spa_token_latency_seconds_count", ("component", "total")));
        Assert.Equal(Both("transmissions"), Grew("spa_token_latency_seconds_count", ("component", "edge")));
        Assert.True(Grew("spa_batch_size_count") > 0);
        Assert.True(after.Sum("spa_kv_cache_bytes") > 0);
        Assert.True(after.Sum("spa_edge_devices_connected") >= 1);
    }

    [Fact]
    public async Task TheGenAiConventionsMetricsCountWhatTheResponsesReport()
    {
        using var client = server.Client();
        var before = await Scrape();
        var completion = await PluginCompletionTests.Send(client, "/v1/completions", """{"prompt": ["Once upon a time", "The dog"], "max_tokens": 9}""", HttpStatusCode.OK);
        var chat = await PluginCompletionTests.Send(client, "/v1/chat/completions", """{"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 7}""", HttpStatusCode.OK);
        await PluginCompletionTests.Send(client, "/v1/completions", """{"prompt": "Once", "max_tokens": 0}""", HttpStatusCode.BadRequest);
        var after = await Scrape();

        double Grew(string name, params (string Label, string Value)[] labels) => after.Sum(name, labels) - before.Sum(name, labels);
        long Usage(JsonElement body, string field) => body.GetProperty("usage").GetProperty(field).GetInt64();
        (string, string) Operation(string name) => ("gen_ai_operation_name", name);
        Assert.Equal(1, Grew("gen_ai_server_time_to_first_token_seconds_count", Operation("text_completion"), ("gen_ai_request_model", "stories260K")));
        Assert.Equal(1, Grew("gen_ai_server_time_to_first_token_seconds_count", Operation("chat"), ("gen_ai_provider_name", "spa_orleans")));
        Assert.Equal(2, Grew("gen_ai_server_time_per_output_token_seconds_count"));
        Assert.Equal(Usage(completion, "completion_tokens"), Grew("gen_ai_client_token_usage_sum", Operation("text_completion"), ("gen_ai_token_type", "output")));
        Assert.Equal(Usage(completion, "prompt_tokens"), Grew("gen_ai_client_token_usage_sum", Operation("text_completion"), ("gen_ai_token_type", "input")));
        Assert.Equal(Usage(chat, "completion_tokens"), Grew("gen_ai_client_token_usage_sum", Operation("chat"), ("gen_ai_token_type", "output")));
        // The refused request counts toward the duration under its error type, and toward nothing else.
        Assert.Equal(1, Grew("gen_ai_server_request_duration_seconds_count", Operation("text_completion"), ("error_type", "400")));
        Assert.Equal(3, Grew("gen_ai_server_request_duration_seconds_count"));
        Assert.Equal(3, Grew("spa_finish_reasons_total", ("finish_reason", "length")));
        Assert.Equal(2, Grew("spa_admission_wait_seconds_count"));
    }

    [Fact]
    public async Task MetricsNeedNoKeyAndTheApiStillDoes()
    {
        using var anonymous = server.Client(null);
        using var response = await anonymous.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/models")).StatusCode);
    }

    private Task<Exposition> Scrape() => server.ScrapeAsync();
}
