namespace Spa.Grains;

/// <summary>How the cloud treats edge devices. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class EdgeOptions
{
    public const string Section = "Spa:Edge";

    /// <summary>How long a round trip to a connected device may take before the device counts as unavailable.</summary>
    public double TimeoutMs { get; set; } = 2000;

    /// <summary>
    /// How long a connection lives without the device renewing it (spa-device renews it every third of this); after
    /// that the device is offline until it connects again.
    /// </summary>
    public double ConnectionTtlSeconds { get; set; } = 30;
}
