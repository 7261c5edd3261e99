using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Spa.Cli.Dashboards;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// The repository's monitoring files against real servers: a real Prometheus (the Debian package) scrapes a real silo
/// with grafana/prometheus.yml (only its target and interval changed), real generations run in base, parallel and spa,
/// and then every query of every panel of both dashboards answers with data through Prometheus' HTTP API, the counters
/// equal what the responses report, and both dashboards draw as pictures.
/// </summary>
public sealed class PrometheusDashboardTests
{
    private const string Window = "1m";
    private static readonly string Grafana = Path.Combine(SharedData.RepoRoot, "grafana");

    [Fact]
    public async Task EveryPanelQueryAnswersFromPrometheusScrapingARealSilo()
    {
        var binary = FindOnPath("prometheus") ?? throw new InvalidOperationException(
            "the prometheus binary is not on PATH: install the Debian package 'prometheus' (apt-get install --no-install-recommends prometheus; .ci/run does)");
        var scratch = Directory.CreateTempSubdirectory("spa-prometheus-");
        var server = ServerFixture.With();
        await server.InitializeAsync();
        try
        {
            var config = Path.Combine(scratch.FullName, "prometheus.yml");
            File.WriteAllText(config, ScrapingOnly(File.ReadAllText(Path.Combine(Grafana, "prometheus.yml")), server.BaseAddress.Authority));
            int port = Ports.Free();
            var start = new ProcessStartInfo(binary)
            {
                ArgumentList =
                {
                    $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(scratch.FullName, "data")}",
                    $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                },
            };
            await using var prometheus = ChildProcess.Start(start);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(10) };
            var api = new PrometheusApi(http);

            var before = await WaitFor(api, prometheus, "sum(spa_tokens_generated_total)", _ => true);
            var transmissionsBefore = await WaitFor(api, prometheus, "sum(spa_edge_transmissions_total)", _ => true);
            using var client = server.Client();
            var device = await PluginCompletionTests.SimulatedDevice(client, "prom", RandomPlugin.Ladder);
            var responses = new Dictionary<string, JsonElement>();
            foreach (var mode in new[] { "base", "parallel", "spa" })
                responses[mode] = (await PluginCompletionTests.Send(client, "/v1/completions",
                    JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 16, spa = new { mode, device_id = mode == "base" ? null : device } }),
                    HttpStatusCode.OK)).GetProperty("spa");
            // Refusals, so that the error panels have something to show: a body that is not JSON, and a wrong key.
            await PluginCompletionTests.Send(client, "/v1/completions", "{", HttpStatusCode.BadRequest);
            using (var stranger = server.Client("not-a-key"))
                Assert.Equal(HttpStatusCode.Unauthorized, (await stranger.PostAsync("/v1/completions", PluginCompletionTests.Json("{}"))).StatusCode);

            long tokens = responses.Values.Sum(r => r.GetProperty("generated_tokens").GetInt64());
            await WaitFor(api, prometheus, "sum(spa_tokens_generated_total)", v => v == before + tokens);
            // Two more scrapes, so that every rate window holds samples after the generations.
            const string Scrapes = "min(count_over_time(up[10m]))";
            double scrapes = await WaitFor(api, prometheus, Scrapes, _ => true);
            await WaitFor(api, prometheus, Scrapes, n => n >= scrapes + 2);

            foreach (var file in Directory.GetFiles(Path.Combine(Grafana, "dashboards"), "*.json"))
            {
                var dashboard = GrafanaDashboard.Load(file);
                Assert.NotEmpty(dashboard.Panels);
                foreach (var panel in dashboard.Panels)
                {
                    Assert.NotEmpty(panel.Queries);
                    foreach (var query in panel.Queries)
                    {
                        var answer = await api.Query(GrafanaDashboard.WithWindow(query.Expr, Window), CancellationToken.None);
                        Assert.True(answer.Count > 0, $"{Path.GetFileName(file)}, panel '{panel.Title}': no data for {query.Expr}");
                    }
                }
                var picture = Path.Combine(scratch.FullName, Path.GetFileNameWithoutExtension(file) + ".png");
                var now = DateTimeOffset.UtcNow;
                await DashboardPicture.Render(dashboard, api, now.AddMinutes(-2), now, TimeSpan.FromSeconds(2), Window, picture, CancellationToken.None);
                Assert.True(new FileInfo(picture).Length > 10_000, $"the picture of {Path.GetFileName(file)} is nearly empty");
            }

            // The scraped counts are the responses' counts.
            var parallel = responses["parallel"];
            var gated = responses["spa"];
            async Task<double> Value(string expr) => Assert.Single(await api.Query(expr, CancellationToken.None)).Points.Single().Value;
            Assert.Equal(before + tokens, await Value("sum(spa_tokens_generated_total)"));
            Assert.Equal(transmissionsBefore + parallel.GetProperty("transmissions").GetInt64() + gated.GetProperty("transmissions").GetInt64(),
                await Value("sum(spa_edge_transmissions_total)"));
            // M per token: exactly 1 in parallel (one round trip every token), within (0, 1) in spa, as the responses say.
            Assert.Equal(1.0, await Value(Rate("mode=\"parallel\"", "spa_edge_transmissions_total") + " / " + Rate("mode=\"parallel\"", "spa_tokens_generated_total")), 6);
            double m = await Value(Rate("mode=\"spa\"", "spa_edge_transmissions_total") + " / " + Rate("mode=\"spa\"", "spa_tokens_generated_total"));
            Assert.Equal(gated.GetProperty("m").GetDouble(), m, 6);
            Assert.Equal(0, await Value("sum(spa_sessions_active)"));
            Assert.True(await Value("sum(spa_edge_devices_connected)") >= 1);
            Assert.Equal(1, await Value("sum(spa_requests_total{status=\"401\"})"));
            Assert.Equal(3, await Value("sum(spa_requests_total{status=\"200\"})"));
        }
        finally
        {
            await server.DisposeAsync();
            scratch.Delete(recursive: true);
        }
    }

    private static string Rate(string selector, string metric) => $"sum(rate({metric}{{{selector}}}[{Window}]))";

    /// <summary>The repository's configuration with the silo as the only target and a 1 s scrape interval, so that the test waits seconds, not minutes.</summary>
    private static string ScrapingOnly(string config, string target)
    {
        var targets = new Regex(@"targets:\s*\[[^\]]*\]");
        Assert.Single(targets.Matches(config));
        config = targets.Replace(config, $"targets: ['{target}']");
        Assert.Contains("scrape_interval: 5s", config);
        return config.Replace("scrape_interval: 5s", "scrape_interval: 1s").Replace("evaluation_interval: 5s", "evaluation_interval: 1s");
    }

    /// <summary>Polls <paramref name="expr"/> (one series) until its value passes <paramref name="done"/>; 60 s at most.</summary>
    /// <remarks>NaN stands for "no single series yet"; an HTTP failure means Prometheus is not listening yet.</remarks>
    private static Task<double> WaitFor(PrometheusApi api, ChildProcess prometheus, string expr, Func<double, bool> done) =>
        Eventually.Until(async () =>
            {
                Assert.False(prometheus.HasExited, $"prometheus exited: {prometheus}");
                var answer = await api.Query(expr, CancellationToken.None);
                return answer.Count == 1 ? answer[0].Points[0].Value : double.NaN;
            },
            value => !double.IsNaN(value) && done(value), TimeSpan.FromSeconds(60), $"'{expr}' to reach the expected value", TimeSpan.FromMilliseconds(250),
            retryOn: e => e is HttpRequestException, context: prometheus.ToString);

    private static string? FindOnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);
}
