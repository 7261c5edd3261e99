using System.CommandLine;
using Spa.CommandLine;
using Spa.Cli.Dashboards;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa dashboard render</c>: draws Grafana dashboards (grafana/dashboards/*.json) as PNGs from a Prometheus server's
/// data, running each panel's queries as Grafana would: pictures of the dashboards where no Grafana runs.
/// </summary>
public static class DashboardCommand
{
    public static Command Create()
    {
        var dashboard = new Command("dashboard", "Grafana dashboards of the cluster.");
        dashboard.Subcommands.Add(Render());
        return dashboard;
    }

    private static Command Render()
    {
        var prometheus = new Option<string>("--prometheus") { Description = "The Prometheus server's address.", DefaultValueFactory = _ => "http://127.0.0.1:9090" };
        var files = new Option<string[]>("--dashboard") { Description = "A dashboard's JSON model (repeat for several).", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<string>("--out") { Description = "The folder for the PNGs (one per dashboard, named as its file).", Required = true };
        var minutes = new Option<double>("--minutes") { Description = "The time range: this many minutes up to --end.", DefaultValueFactory = _ => 15 };
        var end = new Option<DateTimeOffset?>("--end") { Description = "The end of the time range, e.g. 2026-01-31T12:00:00Z (default: now)." };
        var step = new Option<double>("--step") { Description = "Seconds between points.", DefaultValueFactory = _ => 5 };
        var window = new Option<string>("--window") { Description = "The window of rate() and quantiles ($__rate_interval), a Prometheus duration.", DefaultValueFactory = _ => "1m" };

        var command = new Command("render", "Draw dashboards as PNGs from the same Prometheus queries their panels run.");
        foreach (var option in new Option[] { prometheus, files, output, minutes, end, step, window }) command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            if (!Uri.TryCreate(result.GetValue(prometheus), UriKind.Absolute, out var address) || address.Scheme is not ("http" or "https"))
                throw new UsageException($"--prometheus must be an http(s) address, got '{result.GetValue(prometheus)}'");
            if (result.GetValue(minutes) is var range && !(range is > 0 and <= 24 * 60)) throw new UsageException($"--minutes must be in (0, 1440], got {range}");
            if (result.GetValue(step) is var seconds && !(seconds is >= 1 and <= 3600)) throw new UsageException($"--step must be in [1, 3600] seconds, got {seconds}");
            var dashboards = result.GetValue(files)!.Select(f => File.Exists(f) ? f : throw new UsageException($"--dashboard: no file {f}")).ToArray();
            var folder = Directory.CreateDirectory(result.GetValue(output)!).FullName;

            using var http = new HttpClient { BaseAddress = new Uri(address.ToString().TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(30) };
            var api = new PrometheusApi(http);
            var until = result.GetValue(end) ?? DateTimeOffset.UtcNow;
            foreach (var file in dashboards)
            {
                var path = Path.Combine(folder, Path.GetFileNameWithoutExtension(file) + ".png");
                await DashboardPicture.Render(GrafanaDashboard.Load(file), api, until - TimeSpan.FromMinutes(range), until, TimeSpan.FromSeconds(seconds),
                    result.GetValue(window)!, path, cancellation);
                Console.WriteLine($"{path}");
            }
            return 0;
        });
        return command;
    }
}
