using System.CommandLine;
using System.Diagnostics;
using System.Runtime;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Spa.CommandLine;
using Spa.Grains;
using Spa.Grains.Abstractions;
using Spa.Grains.Sessions;
using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Sampling;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa bench cluster</c>: greedy decoding through a one-process Orleans cluster (an in-process silo, sessions driven
/// through <see cref="IDecodingSessionGrain.Generate"/>) against the in-process engine, both measured in the same
/// process and the same run, for each shard count: the per-token latency of one session against the engine's single
/// sequence, and the aggregate tokens/s of many concurrent sessions against one. Every measured run checks that the
/// cluster's tokens are the engine's, and breaks a token's time down into the parts of its way through the cluster
/// (<see cref="TokenPathProfile"/>), reported on stderr and in the JSON.
/// </summary>
public static class BenchClusterCommand
{
    /// <summary>
    /// The targets at <paramref name="shards"/> shards: one session's per-token latency at most a multiple of the
    /// engine's (1.15 at one shard, 1.3 beyond, where every shard adds its hops), and the concurrent sessions' aggregate
    /// tokens/s at least a multiple of one session's (10 at one and two shards, 8 beyond).
    /// </summary>
    public static Targets TargetsAt(int shards) => new(shards == 1 ? 1.15 : 1.3, shards <= 2 ? 10 : 8);

    public static Command Create()
    {
        var model = new ModelArguments();
        var shards = new Option<int[]>("--shards") { Description = "Shard counts to measure (each session's layers split over that many shard grains).", DefaultValueFactory = _ => [1, 2, 5], AllowMultipleArgumentsPerToken = true };
        var sessions = new Option<int>("--sessions") { Description = "Concurrent sessions of the throughput measurement.", DefaultValueFactory = _ => 64 };
        var tokens = new Option<int>("--tokens") { Description = "Tokens each session generates per measured run (fewer if it ends its story).", DefaultValueFactory = _ => 128 };
        var repeats = new Option<int>("--repeats") { Description = "Measured runs per shard count; the median is reported.", DefaultValueFactory = _ => 3 };
        var warmUp = ProcessWarmUp.RoundsOption("every shard count, as a measured run");
        var json = new Option<string?>("--json") { Description = "Write every figure to this JSON file." };

        var command = new Command("cluster", "Greedy decoding through the one-process cluster against the in-process engine: latency at one session, throughput of many.");
        model.AddTo(command);
        var window = new Option<double>("--batch-window-ms") { Description = "Spa:Model:BatchWindowMs of the shard grains.", DefaultValueFactory = _ => new SpaModelOptions().BatchWindowMs };
        var noStream = new Option<bool>("--no-token-stream") { Description = "Do not publish tokens on the Orleans stream (Spa:Model:PublishTokens false)." };
        var tracing = new Option<bool>("--tracing")
        {
            Description = "Measure every cluster run a second time with the traces recorded (a listener on the Spa and Orleans activity sources, as an exporter attaches) and report the ratios.",
        };
        foreach (var option in new Option[] { shards, sessions, tokens, repeats, warmUp, window, noStream, tracing, json }) command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            var settings = new Settings(
                [.. (result.GetValue(shards) ?? []).Distinct()], result.GetValue(sessions), result.GetValue(tokens), result.GetValue(repeats), result.GetValue(warmUp), result.GetValue(tracing));
            if (result.GetValue(window) is var w && !(w is >= 0 and <= 1000)) throw new UsageException($"--batch-window-ms must be in [0, 1000], got {w}");
            if (settings.ShardCounts.Length == 0 || settings.ShardCounts.Any(s => s <= 0)) throw new UsageException("--shards needs one or more positive shard counts");
            foreach (var (option, value) in new[] { (sessions, settings.Sessions), (tokens, settings.Tokens), (repeats, settings.Repeats), (warmUp, settings.WarmUpRounds) })
                if (value <= 0) throw new UsageException($"{option.Name} must be positive, got {value}");
            // A run takes minutes: a JSON file that cannot be written is reported before it, not after.
            var jsonPath = result.GetValue(json);
            if (jsonPath is not null && Path.GetDirectoryName(Path.GetFullPath(jsonPath)) is { } folder && !Directory.Exists(folder))
                throw new UsageException($"--json: the folder {folder} does not exist");
            var modelPath = model.ResolvePath(result);
            var modelOptions = model.Options(result);
            var worker = TorchWorker.Shared;
            // The engine runs on the torch worker too, the thread that runs every forward of the cluster, so that both
            // run with the same torch thread settings.
            var engine = await worker.Run(() => LlamaModel.Load(modelPath, modelOptions));
            try
            {
                var config = engine.Config;
                if (settings.ShardCounts.Max() > config.Layers) throw new UsageException($"--shards: a model of {config.Layers} layers splits into at most {config.Layers} shards");
                if (settings.Tokens + BenchmarkPrompts.MaxTokens > config.MaxSeqLen)
                    throw new UsageException($"--tokens must leave room for the prompt in the context of {config.MaxSeqLen}");
                // Every session keeps its KV-cache slot on every shard, so that the figures measure batching, not
                // evictions and replays: a slot for the whole context of all layers bounds what any shard needs.
                long bytesPerSession = await worker.Run(() =>
                {
                    using var onePosition = engine.CreateCache(1, 1);
                    return onePosition.BytesPerSlot * config.MaxSeqLen;
                });
                var machine = BenchCommand.Machine(engine, await worker.Run(TorchSharp.torch.get_num_threads));
                long budget = bytesPerSession * settings.Sessions;
                double batchWindowMs = result.GetValue(window);
                bool publishTokens = !result.GetValue(noStream);
                using var silo = BuildSilo(modelPath, modelOptions, o =>
                {
                    o.KvCacheBytesPerShard = budget;
                    o.BatchWindowMs = batchWindowMs;
                    o.PublishTokens = publishTokens;
                    o.ProfileTokenPath = true;
                }, silo => silo.AddSpaMemoryStorage());
                await silo.StartAsync(cancellation);
                try
                {
                    var bench = new Bench(silo.Services.GetRequiredService<IGrainFactory>(), silo.Services.GetRequiredService<ModelHost>(),
                        silo.Services.GetRequiredService<TokenPathProfile>(), engine, BenchmarkPrompts.Random(config, settings.Sessions, seed: 1), settings);
                    var figures = await bench.Run(cancellation);
                    var report = new ClusterReport(bench.ModelName, settings.Sessions, settings.Tokens, settings.Repeats,
                        bench.SelfCheck, bench.WarmUp, figures,
                        bench.Options.BatchWindowMs, bench.Options.MaxBatch, bench.Options.PublishTokens, bytesPerSession * settings.Sessions, machine);
                    Console.Out.Write(Table(report));
                    Console.Error.Write(BreakdownTable(report));
                    if (jsonPath is not null)
                        await File.WriteAllTextAsync(jsonPath, JsonSerializer.Serialize(report, BenchCommand.JsonOptions) + Environment.NewLine, CancellationToken.None);
                }
                finally
                {
                    await silo.StopAsync(CancellationToken.None);
                }
            }
            finally
            {
                await worker.Run(engine.Dispose);
            }
            return 0;
        });
        return command;
    }

    /// <summary>
    /// The silo of <c>spa serve</c> without its HTTP side: localhost clustering on free ports, the model host with the
    /// model options <paramref name="configure"/> sets beside the model's, and the grain storage <paramref name="storage"/> adds.
    /// </summary>
    internal static IHost BuildSilo(string modelPath, ModelOptions options, Action<SpaModelOptions> configure, Action<ISiloBuilder> storage)
    {
        // No configuration files or environment: the benchmark measures the settings it reports.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        // Problems only, on stderr: stdout carries the table. Orleans' warnings are advice for production silos (server
        // GC and the like), not problems of this run.
        var log = new StoppingSiloLog(LoggerFactory.Create(console => console.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .SetMinimumLevel(LogLevel.Trace)));
        builder.Logging.AddProvider(log).SetMinimumLevel(LogLevel.Warning).AddFilter("Orleans", LogLevel.Error);
        var (siloPort, gatewayPort) = LoopbackPorts.FreePair();
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(siloPort, gatewayPort);
            storage(silo);
            silo.AddAcceleratorPlacement(builder.Configuration);
            silo.AddActivityPropagation(); // as spa serve: what a recorded trace costs includes Orleans' grain-call activities
            silo.AddSpaModel(o =>
            {
                o.ModelPath = modelPath;
                o.Device = options.Device;
                o.DType = options.DType;
                o.Threads = options.Threads;
                configure(o);
            });
            // Many sessions of many tokens can take longer than Orleans' default 30 s response timeout for one Generate.
            silo.Configure<SiloMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromHours(1));
        });
        var host = builder.Build();
        log.StopsWith(host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
        return host;
    }

    private sealed record Settings(int[] ShardCounts, int Sessions, int Tokens, int Repeats, int WarmUpRounds, bool Tracing);

    /// <summary>Records every activity of the serving path while it lives, as a tracing exporter's listener would.</summary>
    private sealed class TraceRecorder : IDisposable
    {
        private readonly ActivityListener _listener;
        private long _activities, _events;

        public TraceRecorder()
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = source => source.Name is SpaTelemetry.ActivitySourceName or "Microsoft.Orleans.Application",
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = activity =>
                {
                    Interlocked.Increment(ref _activities);
                    foreach (var _ in activity.Events) Interlocked.Increment(ref _events);
                },
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public long Activities => Interlocked.Read(ref _activities);

        public void Dispose() => _listener.Dispose();
    }

    /// <summary>
    /// The tokens of a measured run (one array per sequence or session) and its wall-clock time; for a cluster run, what
    /// the token path profile summed meanwhile.
    /// </summary>
    private sealed record Timed(int[][] Tokens, double Seconds, TokenPathReading? Path = null)
    {
        public int Count => Tokens.Sum(t => t.Length);
        public double TokensPerS => Count / Seconds;
        public double MsPerToken => 1000 * Seconds / Count;

        /// <summary>
        /// Where a token's time went, in ms per token of one session (its sessions ran side by side, so each one's tokens
        /// took the whole time): the parts the profile measured, and the rest of the time outside the session's steps.
        /// </summary>
        public Breakdown Breakdown()
        {
            var path = Path ?? throw new InvalidOperationException("only a cluster run has a token path");
            double Ms(TokenPathPart part) => Math.Round(path.MsPerToken(part), 4);
            double perSession = 1000 * Seconds * Tokens.Length / Count;
            return new Breakdown(Math.Round((double)path.ShardCalls / path.Tokens, 2), new Dictionary<string, double>
            {
                ["request_hop"] = Ms(TokenPathPart.RequestHop),
                ["shard_turn"] = Ms(TokenPathPart.ShardTurn),
                ["batch_window"] = Ms(TokenPathPart.BatchWindow),
                ["worker_hand_off"] = Ms(TokenPathPart.WorkerHandOff),
                ["forward"] = Ms(TokenPathPart.Forward),
                ["worker_return"] = Ms(TokenPathPart.WorkerReturn),
                ["response_hop"] = Ms(TokenPathPart.ResponseHop),
                ["chain_other"] = Math.Round(path.MsPerToken(TokenPathPart.Compute) - path.MsPerToken(TokenPathPart.ShardCalls), 4),
                ["write_wait"] = Ms(TokenPathPart.WriteWait),
                ["sampling"] = Ms(TokenPathPart.Sampling),
                ["write_start"] = Ms(TokenPathPart.WriteStart),
                ["publish"] = Ms(TokenPathPart.Publish),
                ["outside_step"] = Math.Round(perSession - path.MsPerToken(TokenPathPart.Step), 4),
                ["total"] = Math.Round(perSession, 4),
            });
        }
    }

    /// <summary>
    /// One token's time through the cluster by part, ms per token of one session (<see cref="BreakdownParts"/>); the
    /// shard parts summed over the token's <see cref="ShardCallsPerToken"/> shard calls.
    /// </summary>
    private sealed record Breakdown(double ShardCallsPerToken, Dictionary<string, double> MsPerToken)
    {
        /// <summary>Each part's median over <paramref name="runs"/>.</summary>
        public static Breakdown Median(IReadOnlyList<Breakdown> runs) => new(BenchCommand.Median(runs.Select(r => r.ShardCallsPerToken)),
            runs[0].MsPerToken.Keys.ToDictionary(part => part, part => Math.Round(BenchCommand.Median(runs.Select(r => r.MsPerToken[part])), 4)));
    }

    /// <summary>What each part of <see cref="Breakdown"/> measures, in the order of a token's way.</summary>
    private static readonly (string Part, string Meaning)[] BreakdownParts =
    [
        ("request_hop", "session -> shard call: request copy, scheduling"),
        ("shard_turn", "shard grain turns before and after the batch"),
        ("batch_window", "in the batch, waiting for sessions or the worker"),
        ("worker_hand_off", "hand-off to the torch worker"),
        ("forward", "forward on the torch worker (layers, copies in/out)"),
        ("worker_return", "torch worker -> shard grain"),
        ("response_hop", "shard -> session: result copy, scheduling"),
        ("chain_other", "session between shard calls (requests, plugin)"),
        ("write_wait", "waiting for the previous state write"),
        ("sampling", "sampling, appending, metrics, trace"),
        ("write_start", "starting the state write (serialization)"),
        ("publish", "token stream publish, as far as waited for"),
        ("outside_step", "Generate call, session loop, end-of-call flush"),
        ("total", "one session's wall time per token"),
    ];

    /// <summary>Steps, forwards and cache misses summed over the shard grains of one shard count (counters since activation).</summary>
    private sealed record ShardCounters(long Steps, long Forwards, long Evictions, long Replays, int LargestBatch)
    {
        /// <summary>Steps per forward between <paramref name="before"/> and this: how many sessions a forward served.</summary>
        public double MeanBatchSince(ShardCounters before) =>
            Forwards == before.Forwards ? 0 : (double)(Steps - before.Steps - (Replays - before.Replays)) / (Forwards - before.Forwards);
    }

    /// <summary>The measurements, in the order they run: per repeat, per shard count, the engine then the cluster.</summary>
    private sealed class Bench(IGrainFactory grains, ModelHost host, TokenPathProfile profile, LlamaModel engine, IReadOnlyList<int>[] prompts, Settings settings)
    {
        private readonly Generator _generator = new(engine);
        private int _run;
        private IReadOnlyList<WarmUpRound> _warmUp = [];
        private int _sequencesChecked;
        private long _tokensChecked;

        public SpaModelOptions Options => host.Options;
        public string ModelName => host.ModelName;
        public SelfCheck SelfCheck => new(true, _sequencesChecked, _tokensChecked);
        public IReadOnlyList<WarmUpRound> WarmUp => _warmUp;

        public async Task<IReadOnlyList<ShardFigure>> Run(CancellationToken cancellation)
        {
            int many = settings.Sessions;
            var runs = settings.ShardCounts.ToDictionary(s => s, _ => new List<RunFigure>());
            int steps = 1 + settings.ShardCounts.Length * settings.Repeats, step = 0;
            var clock = Stopwatch.StartNew();
            using var progress = new ProgressLine();
            void Report(string what) =>
                progress.Update($"{ProgressLine.Bar((double)step / steps)} {what}  {ProgressLine.Duration(clock.Elapsed)}", force: true);

            _warmUp = await ProcessWarmUp.RunAsync(settings.WarmUpRounds, async () =>
            {
                await Engine(1, settings.Tokens);
                await Engine(many, settings.Tokens);
                foreach (int shards in settings.ShardCounts)
                {
                    cancellation.ThrowIfCancellationRequested();
                    await Cluster(shards, 1, settings.Tokens);
                    await Cluster(shards, many, settings.Tokens);
                    if (!settings.Tracing) continue;
                    using var recorder = new TraceRecorder();
                    await Cluster(shards, 1, settings.Tokens);
                    await Cluster(shards, many, settings.Tokens);
                }
            }, Report);
            step++;
            for (int repeat = 1; repeat <= settings.Repeats; repeat++)
            {
                foreach (int shards in settings.ShardCounts)
                {
                    string where = $"run {repeat}/{settings.Repeats}, {shards} shard(s)";
                    cancellation.ThrowIfCancellationRequested();
                    var jit = JitInfo.GetCompilationTime();
                    Report($"{where}: engine, 1 sequence");
                    var engineOne = await Engine(1, settings.Tokens);
                    Report($"{where}: cluster, 1 session");
                    var clusterOne = await Cluster(shards, 1, settings.Tokens);
                    Check(clusterOne, engineOne, $"{where}, 1 session");
                    cancellation.ThrowIfCancellationRequested();
                    Report($"{where}: engine, batch of {many}");
                    var engineMany = await Engine(many, settings.Tokens);
                    Report($"{where}: cluster, {many} sessions");
                    var before = await Counters(shards);
                    var clusterMany = await Cluster(shards, many, settings.Tokens);
                    var after = await Counters(shards);
                    Check(clusterMany, engineMany, $"{where}, {many} sessions");
                    Traced? traced = null;
                    if (settings.Tracing)
                    {
                        Report($"{where}: cluster traced, 1 and {many} sessions");
                        using var recorder = new TraceRecorder();
                        var tracedOne = await Cluster(shards, 1, settings.Tokens);
                        var tracedMany = await Cluster(shards, many, settings.Tokens);
                        Check(tracedOne, engineOne, $"{where}, 1 session traced");
                        Check(tracedMany, engineMany, $"{where}, {many} sessions traced");
                        if (recorder.Activities < tracedOne.Count + tracedMany.Count)
                            throw new InvalidOperationException($"the traced runs recorded {recorder.Activities} activities for {tracedOne.Count + tracedMany.Count} tokens: tracing is not on");
                        traced = new Traced(Math.Round(tracedOne.MsPerToken, 3), Math.Round(tracedOne.MsPerToken / clusterOne.MsPerToken, 3),
                            Math.Round(tracedMany.TokensPerS, 1), Math.Round(tracedMany.TokensPerS / clusterMany.TokensPerS, 3), recorder.Activities);
                    }
                    runs[shards].Add(new RunFigure(repeat,
                        Math.Round(engineOne.MsPerToken, 3), Math.Round(clusterOne.MsPerToken, 3), Math.Round(clusterOne.MsPerToken / engineOne.MsPerToken, 3),
                        Math.Round(engineOne.TokensPerS, 1), Math.Round(engineMany.TokensPerS, 1),
                        Math.Round(clusterOne.TokensPerS, 1), Math.Round(clusterMany.TokensPerS, 1), Math.Round(clusterMany.TokensPerS / clusterOne.TokensPerS, 2),
                        Math.Round(after.MeanBatchSince(before), 2), after.Evictions - before.Evictions, after.Replays - before.Replays, clusterMany.Count,
                        Math.Round((JitInfo.GetCompilationTime() - jit).TotalMilliseconds, 1), traced,
                        clusterOne.Breakdown(), clusterMany.Breakdown()));
                    step++;
                }
            }
            Report("done");

            var figures = new List<ShardFigure>();
            foreach (int shards in settings.ShardCounts)
            {
                var r = runs[shards];
                double latency = BenchCommand.Median(r.Select(x => x.LatencyRatio)), throughput = BenchCommand.Median(r.Select(x => x.ThroughputRatio));
                var targets = TargetsAt(shards);
                figures.Add(new ShardFigure(shards,
                    BenchCommand.Median(r.Select(x => x.EngineMsPerToken)), BenchCommand.Median(r.Select(x => x.ClusterMsPerToken)), latency, latency <= targets.LatencyRatioAtMost,
                    BenchCommand.Median(r.Select(x => x.ClusterOneTokensPerS)), BenchCommand.Median(r.Select(x => x.ClusterManyTokensPerS)), throughput, throughput >= targets.ThroughputRatioAtLeast, targets,
                    BenchCommand.Median(r.Select(x => x.EngineOneTokensPerS)), BenchCommand.Median(r.Select(x => x.EngineBatchTokensPerS)),
                    Math.Round(BenchCommand.Median(r.Select(x => x.ClusterManyTokensPerS / x.EngineBatchTokensPerS)), 2),
                    BenchCommand.Median(r.Select(x => x.MeanBatch)), (await Counters(shards)).LargestBatch,
                    settings.Tracing ? BenchCommand.Median(r.Select(x => x.Traced!.LatencyRatio)) : null,
                    settings.Tracing ? BenchCommand.Median(r.Select(x => x.Traced!.ThroughputRatio)) : null,
                    Breakdown.Median([.. r.Select(x => x.OneSession)]), Breakdown.Median([.. r.Select(x => x.ManySessions)]), r));
            }
            return figures;
        }

        /// <summary>The in-process engine on the torch worker: one sequence, or a batch decoding together (one forward a step).</summary>
        private Task<Timed> Engine(int sequences, int tokens) => host.Worker.Run(() =>
        {
            var clock = Stopwatch.StartNew();
            int[][] output = sequences == 1
                ? [[.. _generator.Decode(prompts[0], tokens, SamplingOptions.Greedy).Select(t => t.Id)]]
                : [.. _generator.DecodeBatchGreedy(prompts[..sequences], tokens).Select(t => t.ToArray())];
            return new Timed(output, clock.Elapsed.TotalSeconds);
        });

        /// <summary>
        /// <paramref name="sessions"/> new sessions (ids never used before) generating together through
        /// <paramref name="shards"/> shards, greedy; ended afterwards, outside the time, to free their cache slots.
        /// </summary>
        private async Task<Timed> Cluster(int shards, int sessions, int tokens)
        {
            int run = ++_run;
            var started = Enumerable.Range(0, sessions).Select(i => grains.GetGrain<IDecodingSessionGrain>($"bench-{run}-{shards}-{i}")).ToArray();
            var path = profile.Read();
            var clock = Stopwatch.StartNew();
            var results = await Task.WhenAll(started.Select((g, i) => g.Generate(new GenerationRequest([.. prompts[i]], tokens) { Shards = shards }).AsTask()));
            double seconds = clock.Elapsed.TotalSeconds;
            var made = profile.Read().Since(path);
            await Task.WhenAll(started.Select(g => g.End().AsTask()));
            return new Timed([.. results.Select(r => r.Tokens)], seconds, made);
        }

        private async Task<ShardCounters> Counters(int shards)
        {
            var stats = await Task.WhenAll(Enumerable.Range(0, shards)
                .Select(k => grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format(ModelName, k, shards)).GetStats().AsTask()));
            return new ShardCounters(stats.Sum(s => s.Steps), stats.Sum(s => s.Forwards), stats.Sum(s => s.Evictions),
                stats.Sum(s => s.ReplayRequests), stats.Max(s => s.LargestBatch));
        }

        /// <summary>The self-check: a benchmark of wrong output is worthless, so any difference from the engine stops it.</summary>
        private void Check(Timed cluster, Timed engine, string where)
        {
            for (int i = 0; i < engine.Tokens.Length; i++)
            {
                int[] got = cluster.Tokens[i], want = engine.Tokens[i];
                int at = 0;
                while (at < got.Length && at < want.Length && got[at] == want[at]) at++;
                if (at < got.Length || at < want.Length)
                    throw new InvalidOperationException($"self-check failed ({where}): session {i} generated {got.Length} tokens and the engine {want.Length}; " +
                        $"they differ at token {at} (cluster {(at < got.Length ? got[at] : "none")}, engine {(at < want.Length ? want[at] : "none")})");
                _sequencesChecked++;
                _tokensChecked += want.Length;
            }
        }
    }

    private static string Table(ClusterReport report)
    {
        int many = report.Sessions;
        var m = report.Machine;
        var text = new StringBuilder();
        text.AppendLine($"{report.Model}, {many} sessions x {report.TokensPerSession} tokens, greedy, median of {report.Repeats} run(s); " +
            $"{m.Cores} cores, load {m.LoadAverage?.ToString("F1") ?? "?"} at start, {m.Runtime}");
        text.AppendLine($"self-check passed: {report.SelfCheck.Sequences} sequences, {report.SelfCheck.Tokens} tokens equal to the engine's");
        text.AppendLine(ProcessWarmUp.Summary(report.WarmUp));
        var header = new[] { "shards", "engine ms/token", "cluster ms/token", "latency ratio (target)",
            "cluster 1 session tokens/s", $"{many} sessions tokens/s", $"{many} vs 1 (target)", $"engine batch {many} tokens/s", "mean batch" };
        var rows = report.Shards.Select(f => new[]
        {
            f.Shards.ToString(), f.EngineMsPerToken.ToString("F3"), f.ClusterMsPerToken.ToString("F3"),
            $"{f.LatencyRatio:F3} (<= {f.Targets.LatencyRatioAtMost}) {(f.LatencyTargetMet ? "met" : "MISSED")}",
            f.ClusterOneTokensPerS.ToString("N0"), f.ClusterManyTokensPerS.ToString("N0"),
            $"{f.ThroughputRatio:F2}x (>= {f.Targets.ThroughputRatioAtLeast}x) {(f.ThroughputTargetMet ? "met" : "MISSED")}",
            f.EngineBatchTokensPerS.ToString("N0"), f.MeanBatch.ToString("F1"),
        }).ToList();
        var widths = header.Select((h, c) => rows.Select(r => r[c].Length).Append(h.Length).Max()).ToArray();
        foreach (var row in rows.Prepend(header))
            text.AppendLine(string.Join("  ", row.Select((cell, c) => c == 0 ? cell.PadRight(widths[c]) : cell.PadLeft(widths[c]))));
        foreach (var f in report.Shards.Where(f => f.TracingLatencyRatio is not null))
            text.AppendLine($"tracing recorded, {f.Shards} shard(s): 1 session ms/token x{f.TracingLatencyRatio:F3}, {many} sessions tokens/s x{f.TracingThroughputRatio:F3} " +
                "(traced / untraced, median of the runs' ratios)");
        return text.ToString();
    }

    /// <summary>Per shard count, the medians of each part of a token's time, one session and many, beside the engine's time.</summary>
    private static string BreakdownTable(ClusterReport report)
    {
        var text = new StringBuilder();
        foreach (var f in report.Shards)
        {
            text.AppendLine($"where a token's time goes, {f.Shards} shard(s), ms per token of one session (median of the runs; engine {f.EngineMsPerToken:F3}; " +
                $"shard calls per token {f.OneSession.ShardCallsPerToken:F2}):");
            int width = BreakdownParts.Max(p => p.Meaning.Length);
            text.AppendLine($"  {"part".PadRight(width)}  {"1 session",9}  {$"{report.Sessions} sessions",11}");
            foreach (var (part, meaning) in BreakdownParts)
                text.AppendLine($"  {meaning.PadRight(width)}  {f.OneSession.MsPerToken[part],9:F3}  {f.ManySessions.MsPerToken[part],11:F3}");
        }
        return text.ToString();
    }

    public sealed record Targets(double LatencyRatioAtMost, double ThroughputRatioAtLeast);
    private sealed record SelfCheck(bool Passed, int Sequences, long Tokens);

    /// <summary>One measured run of one shard count; the ratios are against figures measured beside them.</summary>
    private sealed record RunFigure(int Repeat,
        double EngineMsPerToken, double ClusterMsPerToken, double LatencyRatio,
        double EngineOneTokensPerS, double EngineBatchTokensPerS,
        double ClusterOneTokensPerS, double ClusterManyTokensPerS, double ThroughputRatio,
        double MeanBatch, long Evictions, long Replays, int ClusterManyTokens, double JitMs, Traced? Traced, Breakdown OneSession, Breakdown ManySessions);

    /// <summary>The same run measured again with its traces recorded; the ratios are traced / untraced.</summary>
    private sealed record Traced(double ClusterMsPerToken, double LatencyRatio, double ClusterManyTokensPerS, double ThroughputRatio, long Activities);

    /// <summary>The medians over the runs of one shard count (each ratio is the median of the runs' own ratios).</summary>
    private sealed record ShardFigure(int Shards,
        double EngineMsPerToken, double ClusterMsPerToken, double LatencyRatio, bool LatencyTargetMet,
        double ClusterOneTokensPerS, double ClusterManyTokensPerS, double ThroughputRatio, bool ThroughputTargetMet, Targets Targets,
        double EngineOneTokensPerS, double EngineBatchTokensPerS, double ClusterManyVsEngineBatch,
        double MeanBatch, int LargestBatch, double? TracingLatencyRatio, double? TracingThroughputRatio,
        Breakdown OneSession, Breakdown ManySessions, IReadOnlyList<RunFigure> Runs);

    private sealed record ClusterReport(string Model, int Sessions, int TokensPerSession, int Repeats,
        SelfCheck SelfCheck, IReadOnlyList<WarmUpRound> WarmUp, IReadOnlyList<ShardFigure> Shards,
        double BatchWindowMs, int MaxBatch, bool PublishTokens, long KvCacheBytesPerShard, BenchCommand.MachineInfo Machine);
}
