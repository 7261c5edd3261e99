namespace Spa.Grains.Abstractions;

/// <summary>The kind of plugin a device holds: where the user's parameters sit relative to the base.</summary>
[GenerateSerializer, Alias("spa.DevicePluginKind")]
public enum DevicePluginKind
{
    /// <summary>The SPA side network beside the base, fed by its residual stream.</summary>
    Ladder = 0,

    /// <summary>Ladder side-tuning: a narrow transformer beside the base.</summary>
    Lst = 1,

    /// <summary>Rank-r LoRA inside every layer.</summary>
    Lora = 2,

    /// <summary>Adapters inside every layer.</summary>
    Adapter = 3,
}
