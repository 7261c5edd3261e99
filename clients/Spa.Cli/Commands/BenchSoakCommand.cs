using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Spa.CommandLine;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa bench soak</c>: drives a running host with a fixed number of clients for a bounded time (meant to be over
/// its capacity) and records what became of every request and how the host's memory behaved: its resident set at
/// intervals through a warm-up, the load and a quiet period after it, read from <c>/proc/PID/status</c>.
/// </summary>
public static class BenchSoakCommand
{
    public static Command Create()
    {
        var host = new HostArguments("The host's base URL (http:// or https://).", defaultUrl: null);
        var pid = new Option<int?>("--pid") { Description = "The host's process id on this machine: its memory is sampled from /proc/PID/status." };
        var duration = new Option<double>("--duration") { Description = "Seconds of load.", DefaultValueFactory = _ => 600 };
        var warmup = new Option<double>("--warmup") { Description = "Seconds of the same load before the baseline is taken.", DefaultValueFactory = _ => 30 };
        var settle = new Option<double>("--settle") { Description = "Quiet seconds after the warm-up and after the load before memory is read.", DefaultValueFactory = _ => 30 };
        var concurrency = new Option<int>("--concurrency") { Description = "Clients sending requests one after another.", DefaultValueFactory = _ => 32 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "max_tokens of every request.", DefaultValueFactory = _ => 64 };
        var prompt = new Option<string>("--prompt") { Description = "The prompt of every request.", DefaultValueFactory = _ => "Once upon a time" };
        var retryDelay = new Option<double>("--retry-delay-ms") { Description = "How long a client waits after a 429 before it sends again.", DefaultValueFactory = _ => 100 };
        var sample = new Option<double>("--sample-seconds") { Description = "How often memory is sampled.", DefaultValueFactory = _ => 1 };
        var json = new Option<string?>("--json") { Description = "Write the figures to this JSON file (default: stdout)." };

        var command = new Command("soak", "Load a running host over its capacity for a bounded time: requests by status, and its memory before, during and after.");
        host.AddTo(command);
        foreach (var option in new Option[] { pid, duration, warmup, settle, concurrency, maxTokens, prompt, retryDelay, sample, json })
            command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            if (result.GetValue(duration) is not (> 0 and <= 86_400) || result.GetValue(warmup) is not (>= 0 and <= 3600) || result.GetValue(settle) is not (>= 0 and <= 3600))
                throw new UsageException("--duration must be in (0, 86400] seconds, --warmup and --settle in [0, 3600]");
            if (result.GetValue(concurrency) is not (> 0 and <= 4096) || result.GetValue(maxTokens) <= 0)
                throw new UsageException("--concurrency must be from 1 to 4096 and --max-tokens positive");
            if (result.GetValue(sample) is not (>= 0.05 and <= 60) || result.GetValue(retryDelay) is not (>= 0 and <= 60_000))
                throw new UsageException("--sample-seconds must be in [0.05, 60] and --retry-delay-ms in [0, 60000]");
            var memory = result.GetValue(pid) is { } id ? new ProcessMemory(id) : null;
            memory?.Read(); // a process that is not there is bad usage, before any load

            using var http = host.CreateClient(result, TimeSpan.FromMinutes(5), result.GetValue(concurrency));
            var soak = new Soak(http, result.GetValue(concurrency), result.GetValue(maxTokens), result.GetValue(prompt)!,
                TimeSpan.FromMilliseconds(result.GetValue(retryDelay)), memory, TimeSpan.FromSeconds(result.GetValue(sample)));
            var report = await soak.RunAsync(TimeSpan.FromSeconds(result.GetValue(warmup)), TimeSpan.FromSeconds(result.GetValue(duration)),
                TimeSpan.FromSeconds(result.GetValue(settle)), cancellation);
            var text = JsonSerializer.Serialize(report, BenchCommand.JsonOptions);
            if (result.GetValue(json) is { } path) File.WriteAllText(path, text + Environment.NewLine);
            else Console.Out.WriteLine(text);
            return 0;
        });
        return command;
    }

    /// <summary>The resident set of a process of this machine, from /proc/PID/status.</summary>
    private sealed class ProcessMemory(int pid)
    {
        public int Pid => pid;

        /// <summary>VmRSS and VmHWM (the peak resident set since the process started), in bytes.</summary>
        public (long Rss, long Peak) Read()
        {
            try
            {
                string process = pid.ToString(CultureInfo.InvariantCulture);
                return (ProcessStatus.Bytes("VmRSS", process), ProcessStatus.Bytes("VmHWM", process));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--pid: cannot read /proc/{pid}/status ({e.Message})");
            }
            catch (InvalidDataException e)
            {
                throw new UsageException($"--pid: {e.Message}");
            }
        }
    }

    private sealed class Soak(HttpClient http, int concurrency, int maxTokens, string prompt, TimeSpan retryDelay, ProcessMemory? memory, TimeSpan sampleEvery)
    {
        private readonly Dictionary<string, long> _statuses = new(StringComparer.Ordinal);
        private readonly List<double> _latenciesMs = [];
        private readonly List<MemorySample> _samples = [];
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _completed, _tokens, _transportErrors;
        private bool _counting;

        public async Task<SoakReport> RunAsync(TimeSpan warmup, TimeSpan duration, TimeSpan settle, CancellationToken cancellation)
        {
            double? loadBefore = BenchCommand.LoadAverage();
            var body = JsonSerializer.Serialize(new { prompt, max_tokens = maxTokens });

            using var progress = new ProgressLine();
            if (warmup > TimeSpan.Zero) await Phase("warmup", warmup, load: true);
            long? baseline = await Quiet("settle-warmup", settle);
            _counting = true;
            var loadStart = _clock.Elapsed;
            await Phase("load", duration, load: true);
            var loadSeconds = (_clock.Elapsed - loadStart).TotalSeconds;
            _counting = false;
            long? after = await Quiet("settle-after", settle);

            async Task Phase(string name, TimeSpan length, bool load)
            {
                var end = _clock.Elapsed + length;
                var clients = load ? Enumerable.Range(0, concurrency).Select(_ => Client(end)).ToArray() : [];
                while (_clock.Elapsed < end)
                {
                    cancellation.ThrowIfCancellationRequested();
                    Sample(name);
                    lock (_statuses)
                        progress.Update($"{name} {ProgressLine.Duration(end - _clock.Elapsed)} left: " +
                            string.Join(", ", _statuses.OrderBy(s => s.Key).Select(s => $"{s.Value} x {s.Key}")) + $", {_transportErrors} errors");
                    await Task.Delay(sampleEvery < end - _clock.Elapsed ? sampleEvery : Max(end - _clock.Elapsed, TimeSpan.Zero), cancellation);
                }
                await Task.WhenAll(clients); // each finishes the request it has in flight
                Sample(name);
            }

            async Task<long?> Quiet(string name, TimeSpan length)
            {
                await Phase(name, length, load: false);
                return memory is null ? null : _samples[^1].RssBytes;
            }

            async Task Client(TimeSpan end)
            {
                while (_clock.Elapsed < end && !cancellation.IsCancellationRequested)
                {
                    var started = _clock.Elapsed;
                    string status;
                    try
                    {
                        using var response = await http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"), cancellation);
                        var text = await response.Content.ReadAsStringAsync(cancellation);
                        status = ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
                        if (response.StatusCode == HttpStatusCode.OK && _counting) Finished(text, (_clock.Elapsed - started).TotalMilliseconds);
                        if (response.StatusCode == HttpStatusCode.TooManyRequests) await Task.Delay(retryDelay, cancellation);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellation.IsCancellationRequested)
                    {
                        if (_counting) Interlocked.Increment(ref _transportErrors);
                        await Task.Delay(retryDelay, CancellationToken.None);
                        continue;
                    }
                    if (!_counting) continue;
                    lock (_statuses) _statuses[status] = _statuses.GetValueOrDefault(status) + 1;
                }
            }

            var peakRss = _samples.Where(s => s.Phase == "load").Select(s => s.RssBytes).DefaultIfEmpty().Max();
            var peakHwm = memory?.Read().Peak;
            _latenciesMs.Sort();
            return new SoakReport(http.BaseAddress!.ToString(), concurrency, maxTokens, warmup.TotalSeconds, Math.Round(loadSeconds, 1), settle.TotalSeconds,
                new SortedDictionary<string, long>(_statuses), _transportErrors, _completed, _tokens, Math.Round(_tokens / loadSeconds, 1),
                new Latency(Percentile(0.5), Percentile(0.99)),
                memory is null ? null : new MemoryFigures(memory.Pid, baseline, peakRss, peakHwm, after, _samples),
                Environment.ProcessorCount, loadBefore, BenchCommand.LoadAverage());
        }

        /// <summary>A 200: finished when it carries its finish reason; its generated tokens are counted.</summary>
        private void Finished(string text, double ms)
        {
            var root = JsonDocument.Parse(text).RootElement;
            if (root.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind != JsonValueKind.String) return;
            Interlocked.Increment(ref _completed);
            Interlocked.Add(ref _tokens, root.GetProperty("usage").GetProperty("completion_tokens").GetInt64());
            lock (_latenciesMs) _latenciesMs.Add(ms);
        }

        private void Sample(string phase)
        {
            if (memory is null) return;
            var (rss, _) = memory.Read();
            _samples.Add(new MemorySample(Math.Round(_clock.Elapsed.TotalSeconds, 2), phase, rss));
        }

        private double? Percentile(double q) =>
            _latenciesMs.Count == 0 ? null : Math.Round(_latenciesMs[(int)Math.Min(_latenciesMs.Count - 1, Math.Floor(q * _latenciesMs.Count))], 1);

        private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
    }

    private sealed record MemorySample(double TS, string Phase, long RssBytes);
    private sealed record MemoryFigures(int Pid, long? BaselineRssBytes, long PeakRssBytes, long? PeakHwmBytes, long? AfterRssBytes, IReadOnlyList<MemorySample> Samples);
    private sealed record Latency(double? P50Ms, double? P99Ms);
    private sealed record SoakReport(string Url, int Concurrency, int MaxTokens, double WarmupS, double LoadS, double SettleS,
        IReadOnlyDictionary<string, long> Requests, long TransportErrors, long Completed, long Tokens, double TokensPerS, Latency Latency,
        MemoryFigures? Memory, int Cores, double? LoadAverageBefore, double? LoadAverageAfter);
}
