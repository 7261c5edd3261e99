namespace Spa.Grains.Abstractions;

/// <summary>
/// A user's edge device, keyed by the device id. Registered by its owner with a secret (stored hashed). It is
/// <c>connected</c> while a spa-device process holds an observer on it (the process proves the secret), <c>simulated</c>
/// when registered with a plugin directory and a profile (its plugin then runs in the silo, with the profile's compute
/// and network delays really applied), and <c>offline</c> otherwise. Every <see cref="Ask"/> is one round trip.
/// </summary>
[Alias("spa.IEdgeDeviceGrain")]
public interface IEdgeDeviceGrain : IGrainWithStringKey
{
    /// <summary>Registers the device for its owner (again, for the same owner); another owner's device: <see cref="DeviceAccessDeniedException"/>.</summary>
    [Alias("Register")]
    ValueTask<EdgeDeviceInfo> Register(DeviceRegistration registration);

    /// <summary>The registration and state; <see cref="DeviceNotFoundException"/> when the device is not registered.</summary>
    [Alias("Describe")]
    ValueTask<EdgeDeviceInfo> Describe();

    /// <summary>Checks the device's secret and returns what a device needs to load its plugin: the served base's description.</summary>
    [Alias("Hello")]
    ValueTask<BaseModelFacts> Hello(string secret);

    /// <summary>
    /// A spa-device process connects (and, called again periodically, keeps its connection alive): the observer answers
    /// the cloud's calls; <paramref name="plugin"/> says what the device holds and hands the cloud its gate.
    /// </summary>
    [Alias("Connect")]
    ValueTask<EdgeDeviceInfo> Connect(string secret, IEdgeDeviceObserver observer, DevicePlugin plugin);

    [Alias("Disconnect")]
    ValueTask Disconnect(string secret);

    /// <summary>What the cloud may hold of the device's plugin: its kind and its gate. <see cref="EdgeUnavailableException"/> when offline.</summary>
    [Alias("GetPlugin")]
    ValueTask<DevicePlugin> GetPlugin();

    /// <summary>One round trip; <see cref="EdgeUnavailableException"/> when the device is offline, fails or times out.</summary>
    [Alias("Ask")]
    ValueTask<EdgeAnswer> Ask(EdgeCall call);

    [Alias("GetStats")]
    ValueTask<EdgeDeviceStats> GetStats();
}

/// <summary>The device side of a connection: a spa-device process registers one and answers the cloud's calls on it.</summary>
[Alias("spa.IEdgeDeviceObserver")]
public interface IEdgeDeviceObserver : IGrainObserver
{
    [Alias("Answer")]
    Task<EdgeAnswer> Answer(EdgeCall call);
}
