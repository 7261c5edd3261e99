namespace Spa.Grains.Abstractions;

/// <summary>What a session does when its device is offline, fails or does not answer in time.</summary>
[GenerateSerializer, Alias("spa.FallbackPolicy")]
public enum FallbackPolicy
{
    /// <summary>Make the token without the plugin, and mark the generation degraded.</summary>
    Base = 0,

    /// <summary>End the generation with <see cref="EdgeUnavailableException"/>.</summary>
    Fail = 1,
}
