using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Threading.Channels;
using Spa.Grains.Abstractions;
using Spa.Model.Plugins;

namespace Spa.LoadTest;

/// <summary>
/// How the load is shaped. Closed loop (no <see cref="Rate"/>): <see cref="Concurrency"/> users, each sending a
/// request, waiting for its last token, thinking (exponential, mean <see cref="ThinkMs"/>) and sending the next.
/// Open loop: requests arrive as a Poisson process of <see cref="Rate"/> per second, whatever is in flight. Each
/// mode runs <see cref="WarmupSeconds"/> unmeasured, then starts requests for <see cref="DurationSeconds"/> or until
/// <see cref="Requests"/> measured ones have started (0: no count bound); requests in flight at the end finish and count.
/// </summary>
public sealed record LoadSettings(
    IReadOnlyList<SessionMode> Modes,
    int Devices,
    int Concurrency,
    double? Rate,
    double ThinkMs,
    double DurationSeconds,
    int Requests,
    double WarmupSeconds,
    int MaxTokens,
    double? Tau,
    int Shards,
    int Seed)
{
    public string Shape => Rate is { } rate ? $"open loop, Poisson arrivals at {rate:0.##}/s" : $"closed loop, {Concurrency} users, think {ThinkMs:0.#} ms";
}

/// <summary>A simulated device of the fleet: its id, its owner (one user per device), its secret and its group's profile.</summary>
public sealed record FleetDevice(string Id, string Owner, string Secret, DeviceGroup Group);

/// <summary>
/// Runs the load of every mode, one after another, against a cluster: registers the fleet's simulated devices with
/// the plugin the mode needs (each device loads its own copy), then drives sessions through
/// <see cref="IDecodingSessionGrain.GenerateStream"/>, timing every token as it arrives.
/// </summary>
/// <remarks>
/// With <paramref name="processes"/> the devices are real <c>spa-device</c> processes instead of simulated ones. A stream
/// broken by a silo loss is resumed from the tokens already received (<see cref="SiloLoss.Generate"/>), as a client
/// that survives silo loss does. With <paramref name="faults"/> each mode runs that drill (<see cref="FaultDrill"/>).
/// </remarks>
public sealed class LoadRun(IGrainFactory grains, LoadSettings settings, IReadOnlyList<FleetDevice> fleet, PluginFiles plugins,
    IReadOnlyList<int>[] prompts, DeviceProcesses? processes = null, IReadOnlyList<Fault>? faults = null, Action<string>? log = null)
{
    /// <summary>How long a stream may find no live silo before its request fails.</summary>
    private static readonly TimeSpan SiloLossDeadline = TimeSpan.FromSeconds(90);

    private PluginKind? _registeredKind;
    private long _requestIds;
    private readonly string _runId = RandomNumberGenerator.GetHexString(6, lowercase: true);
    private readonly Lock _devicesLock = new();
    private readonly HashSet<string> _down = [];
    private readonly List<FleetDevice> _parked = [];
    private Channel<FleetDevice> _idle = Channel.CreateUnbounded<FleetDevice>();

    /// <summary>The mode running now and its recorder, for the live view.</summary>
    public (ModeRecorder Recorder, Stopwatch Clock)? Current { get; private set; }

    /// <summary>The plugin kind a mode needs on the device; null for base.</summary>
    public static PluginKind? KindFor(SessionMode mode) => mode switch
    {
        SessionMode.Base => null,
        SessionMode.Lora => PluginKind.Lora,
        SessionMode.Adapter => PluginKind.Adapter,
        _ => PluginKind.Ladder,
    };

    /// <summary>
    /// Registers (or re-registers) every device of the fleet with the plugin of <paramref name="kind"/>: as simulated
    /// devices, or as plain devices whose spa-device processes then connect with the plugin.
    /// </summary>
    public async Task RegisterFleet(PluginKind kind, Action<int> progress, CancellationToken cancellation)
    {
        if (_registeredKind == kind) return;
        int done = 0;
        string directory = plugins.Directory(kind);
        await Parallel.ForEachAsync(fleet, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellation }, async (device, _) =>
        {
            await grains.GetGrain<IEdgeDeviceGrain>(device.Id).Register(
                new DeviceRegistration(device.Owner, device.Secret, processes is null ? new SimulatedDevice(directory, device.Group.Edge) : null));
            if (processes is null) progress(Interlocked.Increment(ref done));
        });
        if (processes is not null) await processes.Start(fleet, directory, progress, cancellation);
        _registeredKind = kind;
    }

    /// <summary>
    /// Runs one mode's load and, with a fault schedule, its drill; returns the requests and, for a drill, what each fault did.
    /// </summary>
    public async Task<(ModeRecorder Recorder, DrillFigures? Drill)> RunMode(SessionMode mode, CancellationToken cancellation)
    {
        var recorder = new ModeRecorder(mode);
        lock (_devicesLock)
        {
            _idle = Channel.CreateUnbounded<FleetDevice>();
            foreach (var device in fleet.Where(d => !_down.Contains(d.Id))) _idle.Writer.TryWrite(device);
        }
        var idle = _idle.Reader;
        var clock = Stopwatch.StartNew();
        Current = (recorder, clock);
        var random = new Random(HashCode.Combine(settings.Seed, mode));
        double warmup = settings.WarmupSeconds, end = settings.WarmupSeconds + settings.DurationSeconds;
        int measuredStarted = 0;
        using var modeEnded = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var drill = faults is { Count: > 0 } ? new FaultDrill(faults, KillDevices, devices => RestartDevices(mode, devices, cancellation), log ?? (_ => { })) : null;
        var drilling = drill?.Run(clock, warmup, modeEnded.Token) ?? Task.CompletedTask;

        // A request may start while the run is in its window and the request bound is not reached; false ends the mode.
        bool TryStart(out bool measured)
        {
            double now = clock.Elapsed.TotalSeconds;
            measured = now >= warmup;
            if (now >= end || cancellation.IsCancellationRequested) return false;
            return !measured || settings.Requests == 0 || Interlocked.Increment(ref measuredStarted) <= settings.Requests;
        }

        if (settings.Rate is { } rate)
        {
            var inFlight = new List<Task>();
            await foreach (var _ in Arrivals.Poisson(random, rate, clock, cancellation))
            {
                if (!TryStart(out bool measured)) break;
                if (!idle.TryRead(out var device))
                {
                    if (measured) recorder.Refused("no idle device for an arrival (more requests in flight than devices)");
                    continue;
                }
                inFlight.Add(Task.Run(async () =>
                {
                    await Request(mode, device, measured, recorder, clock, cancellation);
                    Release(device);
                }, CancellationToken.None));
            }
            await Task.WhenAll(inFlight);
        }
        else
        {
            // A user waits for an idle device until the window closes: devices a drill killed may never come back.
            using var windowCloses = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            windowCloses.CancelAfter(TimeSpan.FromSeconds(end));
            await Task.WhenAll(Enumerable.Range(0, settings.Concurrency).Select(user => Task.Run(async () =>
            {
                var think = new Random(HashCode.Combine(settings.Seed, mode, user));
                while (TryStart(out bool measured))
                {
                    FleetDevice device;
                    try
                    {
                        device = await idle.ReadAsync(windowCloses.Token);
                    }
                    catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
                    {
                        break;
                    }
                    await Request(mode, device, measured, recorder, clock, cancellation);
                    Release(device);
                    if (settings.ThinkMs > 0)
                        await Task.Delay(TimeSpan.FromMilliseconds(-Math.Log(1 - think.NextDouble()) * settings.ThinkMs), cancellation);
                }
            }, CancellationToken.None)));
        }
        await modeEnded.CancelAsync();
        await drilling;
        cancellation.ThrowIfCancellationRequested();
        Current = null;
        if (drill is null) return (recorder, null);
        // A fault also hits requests that started in the warm-up, so the drill counts every request of the mode.
        var requests = recorder.All;
        log?.Invoke($"checking {requests.Count:N0} requests against the same requests run undisturbed");
        var undisturbed = await Undisturbed(mode, requests.Where(s => s.Prompt >= 0).Select(s => s.Prompt).Distinct().ToList(), cancellation);
        return (recorder, DrillFigures.Of(requests, drill.Fired, undisturbed));
    }

    /// <summary>
    /// The tokens of each of <paramref name="promptIndexes"/> generated in <paramref name="mode"/> after the drill, when
    /// the cluster is whole again: as many at once as the load had users, each on a device of its own that is up
    /// (every device of the fleet holds the same plugin).
    /// </summary>
    private async Task<Dictionary<int, int[]>> Undisturbed(SessionMode mode, List<int> promptIndexes, CancellationToken cancellation)
    {
        var devices = Channel.CreateUnbounded<FleetDevice>();
        lock (_devicesLock)
            foreach (var device in fleet.Where(d => !_down.Contains(d.Id)).Take(Math.Max(1, settings.Concurrency))) devices.Writer.TryWrite(device);
        if (devices.Reader.Count == 0) throw new InvalidOperationException("every device of the fleet was killed: none is left to run the requests undisturbed");
        var undisturbed = new ConcurrentDictionary<int, int[]>();
        await Parallel.ForEachAsync(promptIndexes, new ParallelOptions { MaxDegreeOfParallelism = devices.Reader.Count, CancellationToken = cancellation },
            async (prompt, _) =>
            {
                var device = await devices.Reader.ReadAsync(cancellation);
                var session = grains.GetGrain<IDecodingSessionGrain>($"load-{_runId}-{WireNames.Of(mode)}-undisturbed-{prompt}");
                var tokens = new List<int>(settings.MaxTokens);
                await foreach (var token in SiloLoss.Generate(session, NewRequest(mode, prompt, device), SiloLossDeadline, cancellation: cancellation))
                    tokens.Add(token.Token);
                undisturbed[prompt] = [.. tokens];
                await End(session, cancellation);
                devices.Writer.TryWrite(device);
            });
        return new Dictionary<int, int[]>(undisturbed);
    }

    /// <summary>Puts a device back among the idle ones, or aside while a drill holds it killed.</summary>
    private void Release(FleetDevice device)
    {
        lock (_devicesLock)
        {
            if (_down.Contains(device.Id)) _parked.Add(device);
            else _idle.Writer.TryWrite(device);
        }
    }

    private async Task<IReadOnlyList<string>> KillDevices(int count)
    {
        if (processes is null) return [];
        List<string> chosen;
        lock (_devicesLock)
        {
            chosen = [.. fleet.Where(d => !_down.Contains(d.Id)).Select(d => d.Id).Take(count)];
            _down.UnionWith(chosen);
        }
        await processes.Kill(chosen);
        return chosen;
    }

    private async Task RestartDevices(SessionMode mode, IReadOnlyList<string> ids, CancellationToken cancellation)
    {
        var devices = fleet.Where(d => ids.Contains(d.Id)).ToList();
        await processes!.Launch(devices, plugins.Directory(KindFor(mode)!.Value), _ => { }, cancellation);
        lock (_devicesLock)
        {
            _down.ExceptWith(ids);
            foreach (var device in _parked.Where(d => ids.Contains(d.Id)).ToList())
            {
                _parked.Remove(device);
                _idle.Writer.TryWrite(device);
            }
        }
    }

    private GenerationRequest NewRequest(SessionMode mode, int prompt, FleetDevice device) => new([.. prompts[prompt]], settings.MaxTokens)
    {
        Shards = settings.Shards,
        Plugin = new PluginChoice
        {
            Mode = mode,
            DeviceId = mode == SessionMode.Base ? null : device.Id,
            Tau = mode.IsGated() ? settings.Tau : null,
            Fallback = FallbackPolicy.Fail,
        },
        User = device.Owner,
    };

    private async Task Request(SessionMode mode, FleetDevice device, bool measured, ModeRecorder recorder, Stopwatch clock, CancellationToken cancellation)
    {
        long id = Interlocked.Increment(ref _requestIds);
        int prompt = (int)(id % prompts.Length);
        var session = grains.GetGrain<IDecodingSessionGrain>($"load-{_runId}-{WireNames.Of(mode)}-{id}");
        var latencies = new List<float>(settings.MaxTokens);
        var delivered = new List<int>(settings.MaxTokens);
        int resumes = 0;
        long started = Stopwatch.GetTimestamp(), last = started;
        GenerationResult? status = null;
        string? error = null;
        try
        {
            await foreach (var token in SiloLoss.Generate(session, NewRequest(mode, prompt, device), SiloLossDeadline, _ => Interlocked.Increment(ref resumes), cancellation))
            {
                long now = Stopwatch.GetTimestamp();
                latencies.Add((float)Stopwatch.GetElapsedTime(last, now).TotalMilliseconds);
                delivered.Add(token.Token);
                last = now;
                recorder.Token(clock.Elapsed.TotalSeconds);
                if (token.Degraded) throw new EdgeUnavailableException("a token was made without the plugin");
            }
            status = await SiloLoss.RetryAsync(() => session.GetStatus().AsTask(), "reading the session's status", SiloLossDeadline, cancellation);
        }
        catch (Exception e) when (!cancellation.IsCancellationRequested)
        {
            error = $"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}";
        }
        finally
        {
            await End(session, cancellation);
        }
        // The request ends when its session is released: until then its user sends nothing else.
        recorder.Add(new RequestSample(device.Group, measured, [.. latencies], status, error)
        {
            Prompt = prompt, Delivered = [.. delivered], StartedAt = started, EndedAt = Stopwatch.GetTimestamp(), Resumes = resumes,
        });
    }

    private static async Task End(IDecodingSessionGrain session, CancellationToken cancellation)
    {
        try
        {
            await session.End();
        }
        catch (Exception) when (!cancellation.IsCancellationRequested)
        {
            // The session's caches are freed by their LRU if this fails; the request's own outcome is already recorded.
        }
    }
}
