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
/// <remarks>With <paramref name="processes"/> the devices are real <c>spa-device</c> processes instead of simulated ones.</remarks>
public sealed class LoadRun(IGrainFactory grains, LoadSettings settings, IReadOnlyList<FleetDevice> fleet, PluginFiles plugins,
    IReadOnlyList<int>[] prompts, DeviceProcesses? processes = null)
{
    private PluginKind? _registeredKind;
    private long _requestIds;
    private readonly string _runId = RandomNumberGenerator.GetHexString(6, lowercase: true);

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

    public async Task<ModeRecorder> RunMode(SessionMode mode, CancellationToken cancellation)
    {
        var recorder = new ModeRecorder(mode);
        var idle = Channel.CreateUnbounded<FleetDevice>();
        foreach (var device in fleet) idle.Writer.TryWrite(device);
        var clock = Stopwatch.StartNew();
        Current = (recorder, clock);
        var random = new Random(HashCode.Combine(settings.Seed, mode));
        double warmup = settings.WarmupSeconds, end = settings.WarmupSeconds + settings.DurationSeconds;
        int measuredStarted = 0;

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
            double next = 0;
            while (true)
            {
                next += -Math.Log(1 - random.NextDouble()) / rate;
                var wait = TimeSpan.FromSeconds(next) - clock.Elapsed;
                if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellation);
                if (!TryStart(out bool measured)) break;
                if (!idle.Reader.TryRead(out var device))
                {
                    if (measured) recorder.Refused("no idle device for an arrival (more requests in flight than devices)");
                    continue;
                }
                inFlight.Add(Task.Run(async () =>
                {
                    await Request(mode, device, measured, recorder, clock, cancellation);
                    idle.Writer.TryWrite(device);
                }, CancellationToken.None));
            }
            await Task.WhenAll(inFlight);
        }
        else
        {
            await Task.WhenAll(Enumerable.Range(0, settings.Concurrency).Select(user => Task.Run(async () =>
            {
                var think = new Random(HashCode.Combine(settings.Seed, mode, user));
                while (TryStart(out bool measured))
                {
                    var device = await idle.Reader.ReadAsync(cancellation);
                    await Request(mode, device, measured, recorder, clock, cancellation);
                    idle.Writer.TryWrite(device);
                    if (settings.ThinkMs > 0)
                        await Task.Delay(TimeSpan.FromMilliseconds(-Math.Log(1 - think.NextDouble()) * settings.ThinkMs), cancellation);
                }
            }, CancellationToken.None)));
        }
        cancellation.ThrowIfCancellationRequested();
        Current = null;
        return recorder;
    }

    private async Task Request(SessionMode mode, FleetDevice device, bool measured, ModeRecorder recorder, Stopwatch clock, CancellationToken cancellation)
    {
        long id = Interlocked.Increment(ref _requestIds);
        var prompt = prompts[id % prompts.Length];
        var session = grains.GetGrain<IDecodingSessionGrain>($"load-{_runId}-{WireNames.Of(mode)}-{id}");
        var request = new GenerationRequest([.. prompt], settings.MaxTokens)
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
        var latencies = new List<float>(settings.MaxTokens);
        long last = Stopwatch.GetTimestamp();
        try
        {
            await foreach (var token in session.GenerateStream(request, cancellation))
            {
                long now = Stopwatch.GetTimestamp();
                latencies.Add((float)Stopwatch.GetElapsedTime(last, now).TotalMilliseconds);
                last = now;
                recorder.Token(clock.Elapsed.TotalSeconds);
                if (token.Degraded) throw new EdgeUnavailableException("a token was made without the plugin");
            }
            var status = await session.GetStatus();
            recorder.Add(new RequestSample(device.Group, measured, [.. latencies], status, null));
        }
        catch (Exception e) when (!cancellation.IsCancellationRequested)
        {
            recorder.Add(new RequestSample(device.Group, measured, [.. latencies], null, $"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}"));
        }
        finally
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
}
