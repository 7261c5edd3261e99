namespace Spa.Grains.Abstractions;

/// <summary>What the cloud asks of a device in one round trip.</summary>
[GenerateSerializer, Alias("spa.EdgeCallKind")]
public enum EdgeCallKind
{
    /// <summary>A ladder side network over the taps h_0..h_L of one position: [L+1, dim] up, out [1, dim] down.</summary>
    SideNetwork,

    /// <summary>LoRA of one layer: its normalised attention input [T, dim] up, the query and value deltas [T, dim + kvDim] down.</summary>
    LoraAttention,

    /// <summary>The adapter after one layer's attention: its output [T, dim] up, adapted [T, dim] down.</summary>
    AdapterAttention,

    /// <summary>The adapter after one layer's MLP: its output [T, dim] up, adapted [T, dim] down.</summary>
    AdapterMlp,
}

/// <summary>One round trip to a device: <see cref="Layer"/> is the base layer the call belongs to (unused for a side step).</summary>
[GenerateSerializer, Alias("spa.EdgeCall")]
public sealed record EdgeCall(
    [property: Id(0)] string SessionId,
    [property: Id(1)] EdgeCallKind Kind,
    [property: Id(2)] int Layer,
    [property: Id(3)] Activations Input);

/// <summary>The device's answer and the time it computed (the rest of a round trip's time is the network's).</summary>
[GenerateSerializer, Alias("spa.EdgeAnswer")]
public sealed record EdgeAnswer(
    [property: Id(0)] Activations Output,
    [property: Id(1)] double EdgeMs);

/// <summary>
/// A simulated device's compute (cores x FLOP/s per core) and link (round-trip time, bandwidth in Mbit/s, jitter,
/// loss). The delays they imply are really applied on every call. Zero cores or a zero rate means "no delay from this
/// part". <see cref="JitterMs"/>: each round trip's time moves by a uniform draw in [-JitterMs, +JitterMs] (zero mean;
/// at most the round-trip time). <see cref="Loss"/>: the fraction of transmissions lost; a lost one is sent again
/// after a timeout of one round trip, so a call costs 1 / (1 - Loss) round trips on average.
/// </summary>
[GenerateSerializer, Alias("spa.EdgeProfile")]
public sealed record EdgeProfile(
    [property: Id(0)] string Name,
    [property: Id(1)] int Cores,
    [property: Id(2)] double FlopsPerCore,
    [property: Id(3)] double RoundTripMs,
    [property: Id(4)] double UpMbps,
    [property: Id(5)] double DownMbps,
    [property: Id(6)] double JitterMs = 0,
    [property: Id(7)] double Loss = 0);

/// <summary>A device registration: a simulated device also names its plugin directory (read by the silo) and profile.</summary>
[GenerateSerializer, Alias("spa.DeviceRegistration")]
public sealed record DeviceRegistration(
    [property: Id(0)] string Owner,
    [property: Id(1)] string Secret,
    [property: Id(2)] SimulatedDevice? Simulated = null);

[GenerateSerializer, Alias("spa.SimulatedDevice")]
public sealed record SimulatedDevice(
    [property: Id(0)] string PluginDirectory,
    [property: Id(1)] EdgeProfile? Profile = null);

/// <summary>A registered device: its owner, state, the kind of plugin it holds when known, its profile when simulated.</summary>
[GenerateSerializer, Alias("spa.EdgeDeviceInfo")]
public sealed record EdgeDeviceInfo(
    [property: Id(0)] string DeviceId,
    [property: Id(1)] string Owner,
    [property: Id(2)] DeviceState State,
    [property: Id(3)] string Model,
    [property: Id(4)] DevicePluginKind? PluginKind,
    [property: Id(5)] EdgeProfile? Profile);

/// <summary>The served base as a device needs it to load its plugin: the model's name, its configuration (JSON) and identity. No weights.</summary>
[GenerateSerializer, Alias("spa.BaseModelFacts")]
public sealed record BaseModelFacts(
    [property: Id(0)] string Model,
    [property: Id(1)] string ConfigJson,
    [property: Id(2)] string Identity);

/// <summary>
/// What a device tells the cloud about its plugin: the kind, the base it was trained on, and the gate when it has one:
/// its weights (W_g row-major, then its bias if it has one), its tau and what it reads: n alone (W_g 2 x dim), or with
/// <see cref="GateReadsToken"/> n and the current token's embedding (W_g 2 x 2 dim and a bias). The gate's are the only
/// plugin parameters the cloud holds.
/// </summary>
[GenerateSerializer, Alias("spa.DevicePlugin")]
public sealed record DevicePlugin(
    [property: Id(0)] DevicePluginKind Kind,
    [property: Id(1)] string BaseIdentity,
    [property: Id(2)] float[]? GateWeights,
    [property: Id(3)] double Tau,
    [property: Id(4)] bool GateReadsToken = false);

/// <summary>Round trips a device has answered and the bytes they carried (fp32), up and down.</summary>
[GenerateSerializer, Alias("spa.EdgeDeviceStats")]
public sealed record EdgeDeviceStats(
    [property: Id(0)] long RoundTrips,
    [property: Id(1)] long BytesUp,
    [property: Id(2)] long BytesDown);
