using System.CommandLine;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Spa.CommandLine;
using Spa.Edge;
using Spa.Grains.Abstractions;
using Spa.Model;
using Spa.Model.Latency;
using Spa.Model.Plugins;
using Spa.Silo;

namespace Spa.LoadTest;

/// <summary>The command line of spa-load and the run it describes.</summary>
public static class LoadCommand
{
    public const string DefaultModes = "base,parallel,spa,lora,adapter";

    public static RootCommand Create()
    {
        var embedded = new Option<bool>("--embedded") { Description = "Start a one-process cluster (silo, gateway and HTTP on free loopback ports) in this process and load it." };
        var cluster = new Option<string?>("--cluster") { Description = "Load a running cluster through its Orleans gateways, HOST:PORT[,HOST:PORT...] (give several to survive the loss of one). Its silos must be able to read this machine's temporary folder (the simulated devices' plugins)." };
        var responseTimeout = new Option<double>("--response-timeout")
        {
            Description = "Seconds spa-load's Orleans client waits for a reply. A reply that a silo's death swallowed (a call through a surviving gateway to the dead silo) " +
                "fails only after it, and the stream then resumes; keep it above the longest wait for admission.",
            DefaultValueFactory = _ => 30,
        };
        var tlsCa = new Option<string?>("--tls-ca") { Description = "With --cluster: connect to a gateway that speaks TLS, trusting a certificate that chains to the certificates in this PEM file (also given to --device-processes)." };
        var arguments = new ModelArguments();
        var shards = new Option<int>("--shards") { Description = "Shards per session (0: the cluster's default).", DefaultValueFactory = _ => 0 };
        var devices = new Option<int>("--devices") { Description = "Simulated devices in the fleet, each of its own user, each holding its own copy of the plugin.", DefaultValueFactory = _ => 100 };
        var fleet = new Option<string?>("--fleet") { Description = "Fleet file (JSON, or YAML for .yaml/.yml): groups of device and link profiles with their shares." };
        var profiles = new Option<string>("--profiles") { Description = "Without --fleet: built-in profiles in equal shares, from phone-4g, phone-5g, laptop-wifi, server-lan.", DefaultValueFactory = _ => Fleet.DefaultProfile };
        var concurrency = new Option<int>("--concurrency") { Description = "Closed loop: concurrent users, each with one request in flight.", DefaultValueFactory = _ => 10 };
        var rate = new Option<double?>("--rate") { Description = "Open loop instead: Poisson arrivals per second." };
        var think = new Option<double>("--think-ms") { Description = "Closed loop: mean think time between a user's requests (exponential).", DefaultValueFactory = _ => 0 };
        var duration = new Option<double>("--duration") { Description = "Seconds each mode is measured (after its warm-up).", DefaultValueFactory = _ => 30 };
        var requests = new Option<int>("--requests") { Description = "Stop a mode after this many measured requests (0: only the duration bounds it).", DefaultValueFactory = _ => 0 };
        var warmup = new Option<double>("--warmup") { Description = "Seconds of each mode run first and left out of the figures.", DefaultValueFactory = _ => 2 };
        var modes = new Option<string>("--modes") { Description = "Modes to compare, one after another: base, side, parallel, switch, spa, lora, adapter.", DefaultValueFactory = _ => DefaultModes };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens per request (fewer when the story ends).", DefaultValueFactory = _ => 32 };
        var tau = new Option<double?>("--tau") { Description = "Gate threshold of switch and spa (default: the plugin's)." };
        var plugin = new Option<string?>("--plugin") { Description = "A trained ladder plugin directory for the ladder modes (default: random weights)." };
        var seed = new Option<int>("--seed") { Description = "Seed of the prompts, the random plugins and the arrivals.", DefaultValueFactory = _ => 1 };
        var json = new Option<string?>("--json") { Description = "Write the report as JSON here, with CSV, Markdown and PNG plots beside it (same name)." };
        var noPlots = new Option<bool>("--no-plots") { Description = "Do not draw the PNG plots." };
        var deviceProcesses = new Option<bool>("--device-processes") { Description = $"Run the devices as separate spa-device processes over real TCP to the gateway (at most {DeviceProcesses.MaxDevices}; no emulated delays: the link is real loopback)." };
        var project = new Option<string?>("--project") { Description = "Also print the latency model's projection onto llama-7b's dimensions for the same profiles and measured M." };
        var fault = new Option<string[]>("--fault")
        {
            Description = $"A fault drill (one mode): inject this fault, seconds after the measured window opens; repeat for a schedule. Forms: {Fault.Syntax} " +
                "(kill and stop signal a silo process; kill-devices kills spa-load's own --device-processes, started again after the length if one is given; exec runs a shell command, for a deployment). " +
                "The report gives, per fault, the requests in flight, tokens lost and repeated against the same requests run undisturbed afterwards, and the recovery time.",
            Arity = ArgumentArity.ZeroOrMore,
        };

        var url = new Option<string?>("--url") { Description = "Load a running OpenAI-compatible HTTP endpoint instead (this server or any other), e.g. http://127.0.0.1:8080: streamed completions, timed as the common serving benchmarks time them." };
        var apiKey = new Option<string?>("--api-key") { Description = "With --url: the bearer key (default: $SPA_API_KEY, else $OPENAI_API_KEY)." };
        var chat = new Option<bool>("--chat") { Description = "With --url: send chat completions (/v1/chat/completions) rather than completions." };
        var slo = new Option<string?>("--slo") { Description = "With --url: goodput targets, e.g. ttft_ms=500,tpot_ms=50,e2el_ms=5000: a request counts toward goodput when it meets every one." };

        var root = new RootCommand("spa-load: simulates a fleet of edge devices against a SPA cluster and reports, per mode, throughput, per-token latency, time to first token, M and the latency model's prediction beside each measurement.");
        foreach (var option in new Option[] { embedded, cluster, responseTimeout, tlsCa, arguments.Model, shards, devices, fleet, profiles, concurrency, rate, think, duration, requests, warmup, modes, maxTokens, tau, plugin, seed, json, noPlots, deviceProcesses, project, fault, url, apiKey, chat, slo })
            root.Options.Add(option);
        root.SetGuardedAction(async (result, cancellation) =>
        {
            if (result.GetValue(url) is { } endpoint)
            {
                var clusterOnly = new Option[] { embedded, cluster, tlsCa, responseTimeout, shards, devices, fleet, profiles, modes, tau, plugin, deviceProcesses, project, fault, noPlots, think, warmup };
                if (clusterOnly.FirstOrDefault(o => result.GetResult(o) is { Implicit: false }) is { } extra)
                    throw new UsageException($"{extra.Name} does not apply to --url, which loads an HTTP endpoint as a client");
                return await RunHttp(endpoint, result.GetValue(apiKey), result.GetValue(chat), ServiceLevels.Parse(result.GetValue(slo)), result.GetValue(concurrency),
                    result.GetValue(rate), result.GetValue(duration), result.GetValue(requests), result.GetValue(maxTokens), result.GetValue(seed), result.GetValue(json), cancellation);
            }
            if (new Option[] { apiKey, chat, slo }.FirstOrDefault(o => result.GetResult(o) is { Implicit: false }) is { } httpOnly)
                throw new UsageException($"{httpOnly.Name} is for --url");
            var target = result.GetValue(cluster);
            if (result.GetValue(embedded) == (target is not null)) throw new UsageException("give either --embedded or --cluster HOST:PORT");
            var caPath = result.GetValue(tlsCa);
            if (caPath is not null && target is null) throw new UsageException("--tls-ca is for --cluster: the embedded cluster does not use TLS");
            var trusted = caPath is null ? null : TransportCertificates.LoadTrust(caPath, "--tls-ca");
            var replyTimeout = result.GetValue(responseTimeout);
            if (!(replyTimeout is > 0 and <= 3600)) throw new UsageException($"--response-timeout must be in (0, 3600] seconds, got {replyTimeout}");
            var modeList = ParseModes(result.GetValue(modes)!);
            var settings = new LoadSettings(modeList, result.GetValue(devices), result.GetValue(concurrency), result.GetValue(rate), result.GetValue(think),
                result.GetValue(duration), result.GetValue(requests), result.GetValue(warmup), result.GetValue(maxTokens), result.GetValue(tau),
                result.GetValue(shards), result.GetValue(seed));
            Validate(settings);
            bool asProcesses = result.GetValue(deviceProcesses);
            if (asProcesses && (result.GetValue(fleet) is not null || result.GetValue(profiles) != Fleet.DefaultProfile))
                throw new UsageException("--device-processes: the devices talk over real loopback TCP, so --fleet and --profiles (emulated links) do not apply");
            if (asProcesses && settings.Devices > DeviceProcesses.MaxDevices)
                throw new UsageException($"--device-processes runs at most {DeviceProcesses.MaxDevices} devices (one process each), not {settings.Devices}");
            var faults = (result.GetValue(fault) ?? []).Select(Fault.Parse).ToList();
            CheckDrill(faults, settings, asProcesses);
            var fleetDefinition = asProcesses ? Fleet.Processes
                : result.GetValue(fleet) is { } fleetPath ? Fleet.Load(fleetPath) : Fleet.Of(result.GetValue(profiles)!.Split(',', StringSplitOptions.RemoveEmptyEntries));
            var jsonPath = result.GetValue(json);
            CheckJsonFolder(jsonPath);
            var projected = result.GetValue(project);
            if (projected is not null && !projected.Equals("llama-7b", StringComparison.OrdinalIgnoreCase)) throw new UsageException($"--project knows llama-7b, not '{projected}'");
            var modelPath = arguments.ResolvePath(result);

            using var model = LlamaModel.Load(modelPath, new ModelOptions());
            if (settings.MaxTokens + BenchmarkPrompts.MaxTokens > model.Config.MaxSeqLen)
                throw new UsageException($"--max-tokens must leave room for the prompt in the context of {model.Config.MaxSeqLen}");
            if (settings.Shards > model.Config.Layers) throw new UsageException($"--shards: a model of {model.Config.Layers} layers splits into at most {model.Config.Layers} shards");
            var kinds = modeList.Select(LoadRun.KindFor).OfType<PluginKind>().ToList();
            using var plugins = new PluginFiles(model, kinds, result.GetValue(plugin), settings.Seed);
            var runId = RandomNumberGenerator.GetHexString(6, lowercase: true);
            var fleetDevices = fleetDefinition.Assign(settings.Devices)
                .Select((group, i) => new FleetDevice($"load-{runId}-{i}", $"load-{runId}-user-{i}", RandomNumberGenerator.GetHexString(24, lowercase: true), group))
                .ToList();

            Console.Error.WriteLine(target is null ? "spa-load: starting the embedded cluster" : $"spa-load: connecting to {target}");
            WebApplication? silo = null;
            string gateway = target ?? "";
            try
            {
                if (target is null)
                {
                    var (siloPort, gatewayPort) = LoopbackPorts.FreePair();
                    silo = SiloHost.Build(new SiloHostOptions
                    {
                        Http = "127.0.0.1:0", Model = modelPath, Shards = settings.Shards > 0 ? settings.Shards : null, SiloPort = siloPort, GatewayPort = gatewayPort,
                        ApiKey = RandomNumberGenerator.GetHexString(32, lowercase: true), Quiet = true, Announce = TextWriter.Null,
                    });
                    await silo.StartAsync(cancellation);
                    gateway = $"127.0.0.1:{gatewayPort}";
                }
                using var client = await Connect(gateway, trusted, TimeSpan.FromSeconds(replyTimeout), cancellation);
                await using var processes = asProcesses ? new DeviceProcesses(gateway, caPath is null ? null : Path.GetFullPath(caPath)) : null;
                var run = new LoadRun(client.Services.GetRequiredService<IClusterClient>(), settings, fleetDevices, plugins,
                    BenchmarkPrompts.Random(model.Config, 256, settings.Seed), processes, faults, line => Console.Error.WriteLine($"spa-load: {line}"));
                var figures = new List<ModeFigures>();
                DrillFigures? drill = null;
                double deliveryMs = 0;
                var sorted = new Dictionary<SessionMode, float[]>();
                await using (var live = new LiveView(() => run.Current, settings))
                {
                    foreach (var mode in modeList)
                    {
                        if (LoadRun.KindFor(mode) is { } kind)
                            await run.RegisterFleet(kind, n => live.Status = $"{(asProcesses ? "connecting" : "registering")} {settings.Devices:N0} devices with a {PluginNames.Name(kind)} plugin: {n:N0}", cancellation);
                        live.Status = $"running {WireNames.Of(mode)}";
                        (var recorder, drill) = await run.RunMode(mode, cancellation);
                        if (mode == SessionMode.Base) deliveryMs = Report.DeliveryMs(recorder);
                        var modeFigures = Report.Figures(recorder, model.Config, settings, deliveryMs);
                        figures.Add(modeFigures);
                        sorted[mode] = Percentiles.Sorted(recorder.Measured.Where(s => s.Error is null).SelectMany(s => s.TokenMs));
                        live.Finished(modeFigures);
                    }
                    live.Status = "done";
                }
                var assigned = fleetDevices.GroupBy(d => d.Group).Select(g => new FleetGroupReport(g.Key.Name, g.Count(), g.Key.Device, g.Key.Link)).ToList();
                var report = new LoadReport(Path.GetFileName(Path.TrimEndingDirectorySeparator(modelPath)),
                    target is null ? "embedded one-process cluster" : $"cluster at {target}", settings.Shape, settings.Devices, settings.Concurrency, settings.Rate,
                    settings.DurationSeconds, settings.WarmupSeconds, settings.MaxTokens, assigned, Math.Round(deliveryMs, 3), figures, PeakRssMb(), Machine(),
                    projected is null ? null : Projection(figures, fleetDefinition, settings), drill);
                Console.Out.Write(Report.ToMarkdown(report));
                if (jsonPath is not null)
                {
                    var stem = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!, Path.GetFileNameWithoutExtension(jsonPath));
                    await File.WriteAllTextAsync(jsonPath, Report.ToJson(report), CancellationToken.None);
                    await File.WriteAllTextAsync(stem + ".csv", Report.ToCsv(report), CancellationToken.None);
                    await File.WriteAllTextAsync(stem + ".md", Report.ToMarkdown(report), CancellationToken.None);
                    if (!result.GetValue(noPlots)) Plots.Write(stem, report, sorted);
                }
                await client.StopAsync(CancellationToken.None);
            }
            finally
            {
                if (silo is not null)
                {
                    await silo.StopAsync(CancellationToken.None);
                    await silo.DisposeAsync();
                }
            }
            return 0;
        });
        return root;
    }

    /// <summary>Runs <c>--url</c>: an HTTP load of a running endpoint, reported as the common serving benchmarks report.</summary>
    private static async Task<int> RunHttp(string endpoint, string? key, bool chat, ServiceLevels slo, int concurrency, double? rate, double duration,
        int requests, int maxTokens, int seed, string? jsonPath, CancellationToken cancellation)
    {
        if (!Uri.TryCreate(endpoint.EndsWith('/') ? endpoint : endpoint + "/", UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
            throw new UsageException($"--url: '{endpoint}' is not an http:// or https:// URL");
        if (baseUrl.AbsolutePath.TrimEnd('/').EndsWith("/v1", StringComparison.Ordinal)) baseUrl = new Uri(baseUrl, "..");
        ValidateShape(rate, concurrency, duration, requests, maxTokens);
        CheckJsonFolder(jsonPath);
        key ??= Environment.GetEnvironmentVariable("SPA_API_KEY") ?? Environment.GetEnvironmentVariable("OPENAI_API_KEY");
        var settings = new HttpLoadSettings(baseUrl, key, chat, concurrency, rate, duration, requests, maxTokens, seed, slo);

        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        var load = new HttpLoad(settings, http);
        string model;
        try
        {
            model = await load.ModelAsync(cancellation);
        }
        catch (HttpRequestException e)
        {
            throw new InvalidOperationException($"could not reach {baseUrl} ({e.Message})", e);
        }
        Console.Error.WriteLine($"spa-load: loading {model} at {baseUrl} ({(rate is { } arrivals ? $"Poisson arrivals at {arrivals:0.##}/s" : $"{concurrency} users")}, {duration:0.#} s)");
        int lastShown = 0;
        var (samples, seconds) = await load.RunAsync(model, done =>
        {
            if (done - lastShown < 50) return;
            lastShown = done;
            Console.Error.WriteLine($"spa-load: {done} requests done");
        }, cancellation);
        var summary = HttpReport.Summary(settings, model, samples, seconds);
        Console.Out.Write(HttpReport.ToMarkdown(summary));
        if (jsonPath is not null) await File.WriteAllTextAsync(jsonPath, HttpReport.ToJson(summary), CancellationToken.None);
        return 0;
    }

    private static SessionMode[] ParseModes(string list)
    {
        var names = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(m => m.ToLowerInvariant()).Distinct().ToArray();
        if (names.Length == 0) throw new UsageException("--modes needs at least one mode");
        var modes = names.Select(name => name == "lst"
                ? throw new UsageException("--modes: the cluster does not run lst (an LST plugin keeps a KV cache on the device, which no session mode serves yet)")
                : WireNames.TryParse<SessionMode>(name, out var mode) ? mode
                : throw new UsageException($"--modes: unknown mode '{name}': use {WireNames.List<SessionMode>()}"));
        // Base first: it measures the delivery of tokens to the client that every other mode's prediction uses.
        return [.. modes.OrderBy(m => m == SessionMode.Base ? 0 : 1)];
    }

    private static void Validate(LoadSettings s)
    {
        if (s.Devices <= 0) throw new UsageException($"--devices must be positive, got {s.Devices}");
        ValidateShape(s.Rate, s.Concurrency, s.DurationSeconds, s.Requests, s.MaxTokens);
        if (s.Rate is null && s.Concurrency > s.Devices)
            throw new UsageException($"--concurrency {s.Concurrency} exceeds --devices {s.Devices}: a device serves one session at a time");
        if (!(s.ThinkMs >= 0 && double.IsFinite(s.ThinkMs))) throw new UsageException($"--think-ms must be zero or positive, got {s.ThinkMs}");
        if (!(s.WarmupSeconds >= 0 && s.WarmupSeconds <= 3600)) throw new UsageException($"--warmup must be in [0, 3600] seconds, got {s.WarmupSeconds}");
        if (s.Tau is { } tau && tau is not (>= 0 and <= 1)) throw new UsageException($"--tau must be in [0, 1], got {tau}");
        if (s.Shards < 0) throw new UsageException($"--shards must be zero or positive, got {s.Shards}");
    }

    /// <summary>The load's shape and bounds, which a cluster run and an HTTP run (--url) share.</summary>
    private static void ValidateShape(double? rate, int concurrency, double duration, int requests, int maxTokens)
    {
        if (rate is { } r && !(r > 0 && double.IsFinite(r))) throw new UsageException($"--rate must be positive, got {r}");
        if (rate is null && concurrency <= 0) throw new UsageException($"--concurrency must be positive, got {concurrency}");
        if (!(duration > 0 && duration <= 86400)) throw new UsageException($"--duration must be in (0, 86400] seconds, got {duration}");
        if (requests < 0) throw new UsageException($"--requests must be zero or positive, got {requests}");
        if (maxTokens <= 0) throw new UsageException($"--max-tokens must be positive, got {maxTokens}");
    }

    private static void CheckJsonFolder(string? jsonPath)
    {
        if (jsonPath is not null && Path.GetDirectoryName(Path.GetFullPath(jsonPath)) is { } folder && !Directory.Exists(folder))
            throw new UsageException($"--json: the folder {folder} does not exist");
    }

    /// <summary>
    /// A fault drill runs one mode, inside its measured window; device faults need spa-load's own device processes and a
    /// mode that uses them; process faults need processes that exist.
    /// </summary>
    private static void CheckDrill(IReadOnlyList<Fault> faults, LoadSettings settings, bool asProcesses)
    {
        if (faults.Count == 0) return;
        if (settings.Modes.Count != 1) throw new UsageException($"--fault: a drill runs one mode, so that each fault's figures are of that mode; --modes gives {settings.Modes.Count}");
        if (faults.FirstOrDefault(f => f.AtSeconds >= settings.DurationSeconds) is { } late)
            throw new UsageException($"--fault {late}: it would fire after the measured window of {settings.DurationSeconds:0.##} s (--duration)");
        if (faults.FirstOrDefault(f => f.Action == FaultAction.KillDevices) is { } devices)
        {
            if (!asProcesses) throw new UsageException($"--fault {devices}: kill-devices kills device processes, which run with --device-processes");
            if (settings.Modes[0] == SessionMode.Base) throw new UsageException($"--fault {devices}: mode base uses no device");
            if (devices.Number > settings.Devices) throw new UsageException($"--fault {devices}: the fleet has {settings.Devices} devices");
        }
        FaultDrill.CheckTargets(faults);
    }

    /// <summary>An Orleans client of the cluster at <paramref name="gateways"/> (over TLS when <paramref name="trusted"/> is given), started.</summary>
    private static async Task<IHost> Connect(string gateways, X509Certificate2Collection? trusted, TimeSpan responseTimeout, CancellationToken cancellation)
    {
        var endpoints = GatewayList.Parse(gateways);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering([.. endpoints]);
            client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = responseTimeout);
            client.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = ("spa", "spa"));
            if (trusted is not null) client.UseTlsTrusting(trusted);
        });
        var app = builder.Build();
        using var connecting = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        connecting.CancelAfter(TimeSpan.FromSeconds(30));
        try
        {
            await app.StartAsync(connecting.Token);
        }
        catch (Exception e) when (!cancellation.IsCancellationRequested)
        {
            app.Dispose();
            throw new InvalidOperationException($"could not reach the cluster at {gateways} ({e.Message})", e);
        }
        return app;
    }

    /// <summary>The latency model on LLaMA-7B's dimensions for the fleet's profiles, each mode at its measured M; analytic A100 cloud time.</summary>
    private static IReadOnlyList<LatencyRow> Projection(IReadOnlyList<ModeFigures> figures, Fleet fleet, LoadSettings settings)
    {
        var config = ModelDimensions.Llama7B;
        int context = BenchmarkPrompts.MaxTokens / 2 + settings.MaxTokens / 2;
        var scenarios = figures.Select(f => LoadRun.KindFor(f.Mode) is { } kind
            ? new LatencyScenario(kind, Report.ModeOf(f.Mode), f.Mode.IsGated() ? f.M : null)
            : new LatencyScenario(PluginKind.Ladder, CombinationMode.Base)).ToList();
        return LatencyTable.Build(config, PluginDimensions.For(config), TapPlacement.Edge, ActivationType.Fp32, context,
            LatencyModel.CloudSecondsPerToken(config, Profiles.A100, context), scenarios,
            fleet.Groups.Select(g => g.Device).Distinct(), fleet.Groups.Select(g => g.Link).Distinct());
    }

    /// <summary>This process's peak resident memory (VmHWM), the embedded cluster's included.</summary>
    private static double PeakRssMb()
    {
        long peak = File.Exists("/proc/self/status") ? ProcessStatus.Bytes("VmHWM") : Process.GetCurrentProcess().PeakWorkingSet64;
        return Math.Round(peak / 1048576.0, 1);
    }

    private static string Machine()
    {
        string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";
        return $"{Environment.ProcessorCount} cores, load average {load} at the end, .NET {Environment.Version}";
    }
}
