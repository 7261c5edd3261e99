using System.Globalization;
using System.Text.Json;
using Spa.Testing;

namespace Spa.LoadTest.Tests;

/// <summary>
/// spa-load against a running HTTP endpoint (<c>--url</c>): a real <c>spa serve</c> process loaded with streamed
/// completions and chats, the figures under the common serving benchmarks' names, the token counts equal to what the
/// server's own GenAI metrics counted, and goodput against targets that every request meets and that none can.
/// </summary>
public sealed class HttpEndpointTests
{
    private const string Key = "a-key-for-the-http-load";

    [Fact]
    public async Task AnEndpointIsLoadedAndReportedAsTheServingBenchmarksReport()
    {
        var ports = Ports.Free(3);
        await using var serve = SpaLoad.Start(SpaLoad.SpaDll, ["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}",
            "--silo-port", ports[1].ToString(CultureInfo.InvariantCulture), "--gateway-port", ports[2].ToString(CultureInfo.InvariantCulture), "--api-key", Key]);
        await serve.WaitForOutputAsync("Serving stories260K", TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports[0]}") };
        var before = await Exposition.ScrapeAsync(http);

        var easy = await Run("--url", $"http://127.0.0.1:{ports[0]}/v1", "--api-key", Key, "--concurrency", "2", "--requests", "6", "--duration", "60",
            "--max-tokens", "8", "--slo", "ttft_ms=60000,tpot_ms=60000");
        Assert.Equal(("openai", "stories260K", 6, 6, 0), (easy.GetProperty("backend").GetString(), easy.GetProperty("model_id").GetString(),
            easy.GetProperty("num_prompts").GetInt32(), easy.GetProperty("completed").GetInt32(), easy.GetProperty("failed").GetInt32()));
        var outputs = easy.GetProperty("output_lens").EnumerateArray().Select(o => o.GetInt32()).ToList();
        Assert.All(outputs, o => Assert.InRange(o, 1, 8));
        Assert.Equal(outputs.Sum(), easy.GetProperty("total_output_tokens").GetInt64());
        Assert.Equal(easy.GetProperty("request_throughput").GetDouble(), easy.GetProperty("request_goodput").GetDouble());
        foreach (var metric in new[] { "ttft", "tpot", "itl", "e2el" })
            Assert.True(easy.GetProperty($"p99_{metric}_ms").GetDouble() >= easy.GetProperty($"median_{metric}_ms").GetDouble(), metric);
        Assert.True(easy.GetProperty("median_e2el_ms").GetDouble() >= easy.GetProperty("median_ttft_ms").GetDouble());

        var hard = await Run("--url", $"http://127.0.0.1:{ports[0]}", "--api-key", Key, "--chat", "--concurrency", "1", "--requests", "3", "--duration", "60",
            "--max-tokens", "8", "--slo", "ttft_ms=0.0001");
        Assert.Equal(("openai-chat", 3, 0.0), (hard.GetProperty("backend").GetString(), hard.GetProperty("completed").GetInt32(), hard.GetProperty("request_goodput").GetDouble()));

        // The server counted the same requests and tokens on its own GenAI metrics.
        var after = await Exposition.ScrapeAsync(http);
        double Grew(string name, params (string, string)[] labels) => after.Sum(name, labels) - before.Sum(name, labels);
        Assert.Equal(6, Grew("gen_ai_server_time_to_first_token_seconds_count", ("gen_ai_operation_name", "text_completion")));
        Assert.Equal(3, Grew("gen_ai_server_time_to_first_token_seconds_count", ("gen_ai_operation_name", "chat")));
        Assert.Equal(outputs.Sum(), Grew("gen_ai_client_token_usage_sum", ("gen_ai_operation_name", "text_completion"), ("gen_ai_token_type", "output")));
        Assert.Equal(easy.GetProperty("total_input_tokens").GetInt64(), Grew("gen_ai_client_token_usage_sum", ("gen_ai_operation_name", "text_completion"), ("gen_ai_token_type", "input")));

        await using var refused = await SpaLoad.RunAsync(TimeSpan.FromSeconds(60), "--url", $"http://127.0.0.1:{ports[0]}", "--api-key", "wrong",
            "--requests", "2", "--duration", "10");
        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains("401", refused.Stderr);
        await using var mixed = await SpaLoad.RunAsync(TimeSpan.FromSeconds(60), "--url", $"http://127.0.0.1:{ports[0]}", "--devices", "3");
        Assert.True(mixed.ExitCode == 2, mixed.ToString());
        Assert.Contains("--devices does not apply to --url", mixed.Stderr);
        Assert.Equal(0, await serve.TerminateAsync(TimeSpan.FromSeconds(30)));
    }

    private static async Task<JsonElement> Run(params string[] args)
    {
        var json = Path.Combine(Path.GetTempPath(), $"spa-load-url-{Guid.NewGuid():N}.json");
        try
        {
            await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(120), [.. args, "--json", json]);
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.Contains("| TTFT |", run.Stdout);
            return JsonDocument.Parse(await File.ReadAllTextAsync(json)).RootElement.Clone();
        }
        finally
        {
            File.Delete(json);
        }
    }
}
