using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spa.Edge;
using Spa.Grains.Abstractions;

namespace Spa.Grains;

/// <summary>The persisted registration of a device: its owner, a salted hash of its secret, and how it is simulated if it is.</summary>
[GenerateSerializer, Alias("spa.EdgeDeviceState")]
public sealed class EdgeDeviceState
{
    [Id(0)] public string Owner { get; set; } = "";
    [Id(1)] public byte[] SecretSalt { get; set; } = [];
    [Id(2)] public byte[] SecretHash { get; set; } = [];
    [Id(3)] public string Model { get; set; } = "";
    [Id(4)] public SimulatedDevice? Simulated { get; set; }
}

/// <summary>
/// One registered device. A connected device answers through the observer its spa-device process registered (with
/// a timeout; a failed or late answer takes the device offline until it connects again). A simulated device runs its
/// plugin in this silo on the edge worker and answers when its profile says: after the compute time the profile gives
/// and the link's round-trip time and transfer times, with its jitter and loss (the real compute runs within that time). Counts every round trip and
/// the fp32 bytes it carried, which is where M is measured.
/// </summary>
public sealed class EdgeDeviceGrain(
    [PersistentState("device", SpaGrainsHosting.SessionStorage)] IPersistentState<EdgeDeviceState> state,
    ModelHost host,
    IOptions<EdgeOptions> options,
    GrainMetrics metrics,
    ILogger<EdgeDeviceGrain> logger) : Grain, IEdgeDeviceGrain
{
    private PluginEdge? _simulated;
    private IEdgeDeviceObserver? _observer;
    private DevicePlugin? _connectedPlugin;
    private long _connectedUntil;
    private long _roundTrips, _bytesUp, _bytesDown;

    private string Id => this.GetPrimaryKeyString();
    private bool Registered => state.State.SecretHash.Length > 0;
    private bool Connected => _observer is not null && Stopwatch.GetTimestamp() < _connectedUntil;

    public async ValueTask<EdgeDeviceInfo> Register(DeviceRegistration registration)
    {
        if (string.IsNullOrWhiteSpace(registration.Owner)) throw new ArgumentException("a device needs an owner");
        ClientInputs.CheckDeviceId(Id, "device_id");
        ClientInputs.CheckSecret(registration.Secret);
        if (Registered && state.State.Owner != registration.Owner)
            throw new DeviceAccessDeniedException($"device '{Id}' belongs to another user");
        if (registration.Simulated is { } simulated)
        {
            if (string.IsNullOrWhiteSpace(simulated.PluginDirectory)) throw new ArgumentException("a simulated device needs its plugin directory");
            if (simulated.Profile is { } profile) EdgeProfiles.Validate(profile);
        }
        await DropSimulation();
        (_observer, _connectedPlugin) = (null, null);
        if (registration.Simulated is { } sim) await LoadSimulation(sim.PluginDirectory); // a plugin that does not load fails the registration
        var salt = RandomNumberGenerator.GetBytes(16);
        state.State = new EdgeDeviceState
        {
            Owner = registration.Owner,
            SecretSalt = salt,
            SecretHash = Hash(salt, registration.Secret),
            Model = host.ModelName,
            Simulated = registration.Simulated is { } s ? s with { Profile = s.Profile ?? EdgeProfiles.Local } : null,
        };
        await state.WriteStateAsync();
        logger.LogInformation("device {Device} of {Owner} registered: {State}", Id, registration.Owner, WireNames.Of(Info().State));
        return Info();
    }

    public ValueTask<EdgeDeviceInfo> Describe() => ValueTask.FromResult(Info());

    public async ValueTask<BaseModelFacts> Hello(string secret)
    {
        Authenticate(secret);
        return await PluginEdge.FactsAsync(state.State.Model, await host.GetModelAsync(state.State.Model));
    }

    public async ValueTask<EdgeDeviceInfo> Connect(string secret, IEdgeDeviceObserver observer, DevicePlugin plugin)
    {
        Authenticate(secret);
        if (state.State.Simulated is not null) throw new ArgumentException($"device '{Id}' is registered as simulated: register it again without a plugin directory to connect a real device");
        if (plugin.BaseIdentity != await (await host.GetModelAsync(state.State.Model)).IdentityAsync())
            throw new ArgumentException($"the device's plugin was trained on another base ({plugin.BaseIdentity}), not the served '{state.State.Model}'");
        bool fresh = !Connected;
        (_observer, _connectedPlugin) = (observer, plugin);
        _connectedUntil = Stopwatch.GetTimestamp() + (long)(options.Value.ConnectionTtlSeconds * Stopwatch.Frequency);
        metrics.DeviceReachable(Id, _connectedUntil);
        if (fresh) logger.LogInformation("device {Device} of {Owner} connected ({Kind} plugin)", Id, state.State.Owner, WireNames.Of(plugin.Kind));
        return Info();
    }

    public ValueTask Disconnect(string secret)
    {
        Authenticate(secret);
        (_observer, _connectedPlugin) = (null, null);
        metrics.DeviceGone(Id);
        logger.LogInformation("device {Device} disconnected", Id);
        return ValueTask.CompletedTask;
    }

    public async ValueTask<DevicePlugin> GetPlugin()
    {
        Required();
        if (state.State.Simulated is { } simulated)
        {
            if (_simulated is null) await LoadSimulation(simulated.PluginDirectory);
            return _simulated!.Describe();
        }
        return Connected ? _connectedPlugin! : throw new EdgeUnavailableException($"device '{Id}' is offline");
    }

    public async ValueTask<EdgeAnswer> Ask(EdgeCall call)
    {
        Required();
        var answer = state.State.Simulated is { } simulated ? await AskSimulated(simulated, call) : await AskConnected(call);
        _roundTrips++;
        _bytesUp += 4L * call.Input.Data.Length;
        _bytesDown += 4L * answer.Output.Data.Length;
        return answer;
    }

    public ValueTask<EdgeDeviceStats> GetStats() => ValueTask.FromResult(new EdgeDeviceStats(_roundTrips, _bytesUp, _bytesDown));

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken) => await DropSimulation();

    private async Task<EdgeAnswer> AskConnected(EdgeCall call)
    {
        if (!Connected || _observer is not { } observer) throw new EdgeUnavailableException($"device '{Id}' is offline");
        var timeout = TimeSpan.FromMilliseconds(options.Value.TimeoutMs);
        try
        {
            return await observer.Answer(call).WaitAsync(timeout);
        }
        catch (Exception e) when (e is not ArgumentException)
        {
            // A device that fails or answers late is taken offline: the sessions' fallback decides, and a new connection brings it back.
            (_observer, _connectedPlugin) = (null, null);
            metrics.DeviceGone(Id);
            var reason = e is TimeoutException ? $"did not answer within {timeout.TotalMilliseconds:0} ms" : $"failed ({e.GetType().Name}: {e.Message})";
            logger.LogWarning("device {Device} {Reason}; it is offline until it connects again", Id, reason);
            throw new EdgeUnavailableException($"device '{Id}' {reason}");
        }
    }

    private async Task<EdgeAnswer> AskSimulated(SimulatedDevice simulated, EdgeCall call)
    {
        if (_simulated is null) await LoadSimulation(simulated.PluginDirectory);
        var edge = _simulated!;
        var profile = simulated.Profile ?? EdgeProfiles.Local;
        long started = Stopwatch.GetTimestamp();
        var answer = await TorchWorker.Edge.Run(() => edge.AnswerNow(call));
        return await profile.Emulate(call, answer, edge.Flops(call), started);
    }

    private EdgeDeviceInfo Info()
    {
        var s = Required();
        var deviceState = s.Simulated is not null ? DeviceState.Simulated : Connected ? DeviceState.Connected : DeviceState.Offline;
        var kind = s.Simulated is not null ? _simulated?.Kind : _connectedPlugin?.Kind;
        return new EdgeDeviceInfo(Id, s.Owner, deviceState, s.Model, kind, s.Simulated?.Profile);
    }

    private EdgeDeviceState Required() => Registered ? state.State
        : throw new DeviceNotFoundException($"device '{Id}' is not registered");

    private void Authenticate(string secret)
    {
        var s = Required();
        if (string.IsNullOrEmpty(secret) || !CryptographicOperations.FixedTimeEquals(Hash(s.SecretSalt, secret), s.SecretHash))
            throw new DeviceAccessDeniedException($"wrong secret for device '{Id}'");
    }

    private static byte[] Hash(byte[] salt, string secret) => SHA256.HashData([.. salt, .. Encoding.UTF8.GetBytes(secret)]);

    private async Task LoadSimulation(string directory)
    {
        var model = await host.GetModelAsync(host.ModelName);
        var facts = await PluginEdge.FactsAsync(host.ModelName, model);
        _simulated = await TorchWorker.Edge.Run(() => PluginEdge.Load(directory, facts, host.Options.Device, host.Options.DType));
        metrics.DeviceReachable(Id, long.MaxValue); // a simulated device answers as long as its plugin is loaded
    }

    /// <summary>Also takes the device out of the connected gauge: its callers (registration, deactivation) end any connection too.</summary>
    private async Task DropSimulation()
    {
        metrics.DeviceGone(Id);
        var edge = _simulated;
        _simulated = null;
        if (edge is not null) await TorchWorker.Edge.Run(edge.Dispose);
    }
}
