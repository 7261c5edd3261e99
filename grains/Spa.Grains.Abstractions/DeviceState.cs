namespace Spa.Grains.Abstractions;

/// <summary>Where a device's plugin answers from, if anywhere.</summary>
[GenerateSerializer, Alias("spa.DeviceState")]
public enum DeviceState
{
    /// <summary>Registered, with no live connection: calls to it fail at once.</summary>
    Offline = 0,

    /// <summary>A spa-device process holds the plugin and answers over its connection.</summary>
    Connected = 1,

    /// <summary>The silo runs the plugin from a directory, as slowly as the device's profile.</summary>
    Simulated = 2,
}
