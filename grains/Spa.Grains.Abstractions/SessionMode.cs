namespace Spa.Grains.Abstractions;

/// <summary>How a session combines the base with the user's plugin (docs/method.md).</summary>
[GenerateSerializer, Alias("spa.SessionMode")]
public enum SessionMode
{
    /// <summary>The base alone; no device takes part.</summary>
    Base = 0,

    /// <summary>Logits from the ladder side network alone, at every token.</summary>
    Side = 1,

    /// <summary>The side network's output added to the base's, at every token.</summary>
    Parallel = 2,

    /// <summary>The gate picks, per token, the side network's logits or the base's.</summary>
    Switch = 3,

    /// <summary>The gate picks, per token, the parallel combination or the base's logits.</summary>
    Spa = 4,

    /// <summary>LoRA inside every layer of the base: one round trip per layer.</summary>
    Lora = 5,

    /// <summary>Adapters inside every layer of the base: two round trips per layer.</summary>
    Adapter = 6,
}

/// <summary>What each mode needs: a device, a gate, a ladder plugin or one inside the base.</summary>
public static class SessionModes
{
    public static readonly SessionMode[] All = Enum.GetValues<SessionMode>();

    /// <summary>Modes whose gate decides per token whether the device is asked.</summary>
    public static bool IsGated(this SessionMode mode) => mode is SessionMode.Switch or SessionMode.Spa;

    /// <summary>Modes whose plugin sits inside the base, so the shards call the device inside every layer.</summary>
    public static bool IsSplit(this SessionMode mode) => mode is SessionMode.Lora or SessionMode.Adapter;

    /// <summary>Modes of the ladder side network, which reads the base's taps after the last layer.</summary>
    public static bool IsLadder(this SessionMode mode) => mode is SessionMode.Side or SessionMode.Parallel or SessionMode.Switch or SessionMode.Spa;

    /// <summary>The kind of plugin the device must hold for the mode.</summary>
    public static DevicePluginKind PluginNeeded(this SessionMode mode) => mode switch
    {
        SessionMode.Lora => DevicePluginKind.Lora,
        SessionMode.Adapter => DevicePluginKind.Adapter,
        _ => DevicePluginKind.Ladder,
    };
}
