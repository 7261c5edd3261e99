using Spa.Model.Latency;

namespace Spa.Grains;

/// <summary>
/// Named profiles for simulated devices, from the latency model's device and link profiles ("phone-4g", "phone-5g",
/// "laptop-wifi"), and "local": no delay beyond the real compute. The delays a profile implies for one call are the
/// latency model's terms, so an emulated run and the model's prediction describe the same thing.
/// </summary>
public static class EdgeProfiles
{
    public static readonly EdgeProfile Local = new("local", 0, 0, 0, 0, 0);

    public static IReadOnlyList<EdgeProfile> BuiltIn { get; } =
    [
        Local,
        Of(Profiles.Phone, Profiles.Lte),
        Of(Profiles.Phone, Profiles.FiveG),
        Of(Profiles.Laptop, Profiles.Wifi),
    ];

    public static EdgeProfile Of(DeviceProfile device, LinkProfile link) =>
        new($"{device.Name}-{link.Name}", device.Cores, device.FlopsPerCore, link.RoundTripMs, link.UpMbps, link.DownMbps);

    /// <summary>The built-in profile called <paramref name="name"/>, or a clear error naming them all.</summary>
    public static EdgeProfile Named(string name) =>
        BuiltIn.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown device profile '{name}': use {string.Join(", ", BuiltIn.Select(p => p.Name))}");

    /// <summary>Throws when a profile's figures cannot describe a device and link.</summary>
    public static EdgeProfile Validate(EdgeProfile profile)
    {
        if (profile.Cores < 0 || !(profile.FlopsPerCore >= 0) || !(profile.RoundTripMs >= 0) || !(profile.UpMbps >= 0) || !(profile.DownMbps >= 0)
            || !double.IsFinite(profile.FlopsPerCore) || !double.IsFinite(profile.RoundTripMs) || !double.IsFinite(profile.UpMbps) || !double.IsFinite(profile.DownMbps))
            throw new ArgumentException($"device profile '{profile.Name}': cores, FLOP/s, round-trip time and bandwidths must be finite and not negative");
        return profile;
    }

    /// <summary>The device's compute time for <paramref name="flops"/> (0 when the profile sets no compute).</summary>
    public static double ComputeMs(this EdgeProfile profile, double flops) =>
        profile.Cores > 0 && profile.FlopsPerCore > 0 ? flops / (profile.Cores * profile.FlopsPerCore) * 1e3 : 0;

    /// <summary>The link's time for one round trip carrying the given bytes (0 for the parts the profile leaves unset).</summary>
    public static double NetworkMs(this EdgeProfile profile, long bytesUp, long bytesDown) =>
        profile.RoundTripMs
        + (profile.UpMbps > 0 ? bytesUp * 8 / (profile.UpMbps * 1e6) * 1e3 : 0)
        + (profile.DownMbps > 0 ? bytesDown * 8 / (profile.DownMbps * 1e6) * 1e3 : 0);

    /// <summary>
    /// Holds back a real <paramref name="answer"/> until the profile's device and link would have delivered it: the
    /// compute time the profile gives for <paramref name="flops"/> beyond the real one, then the link's round trip and
    /// transfer times. The answer's edge time becomes the profile's compute time.
    /// </summary>
    public static async Task<EdgeAnswer> Emulate(this EdgeProfile profile, EdgeCall call, EdgeAnswer answer, double flops)
    {
        double computeMs = Math.Max(answer.EdgeMs, profile.ComputeMs(flops));
        double networkMs = profile.NetworkMs(4L * call.Input.Data.Length, 4L * answer.Output.Data.Length);
        double delayMs = computeMs - answer.EdgeMs + networkMs;
        if (delayMs > 0) await Task.Delay(TimeSpan.FromMilliseconds(delayMs));
        return answer with { EdgeMs = computeMs };
    }
}
