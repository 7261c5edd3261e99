using System.Diagnostics;
using Spa.Grains.Abstractions;
using Spa.Model.Latency;

namespace Spa.Edge;

/// <summary>
/// Named profiles for simulated devices, from the latency model's device and link profiles ("phone-4g", "phone-5g",
/// "laptop-wifi", and "server-lan", the paper's Table 2 setting of two servers in one cluster), and "local": no delay
/// beyond the real compute. The delays a profile implies for one call are the
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
        Of(Profiles.Server, Profiles.Lan),
    ];

    public static EdgeProfile Of(DeviceProfile device, LinkProfile link) =>
        new($"{device.Name}-{link.Name}", device.Cores, device.FlopsPerCore, link.RoundTripMs, link.UpMbps, link.DownMbps, link.JitterMs, link.Loss);

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
        if (!(profile.JitterMs >= 0 && profile.JitterMs <= profile.RoundTripMs))
            throw new ArgumentException($"device profile '{profile.Name}': jitter must be between 0 and the round-trip time ({profile.RoundTripMs} ms), got {profile.JitterMs}");
        if (!(profile.Loss is >= 0 and < 1))
            throw new ArgumentException($"device profile '{profile.Name}': loss must be in [0, 1), got {profile.Loss}");
        return profile;
    }

    /// <summary>The device's compute time for <paramref name="flops"/> (0 when the profile sets no compute).</summary>
    public static double ComputeMs(this EdgeProfile profile, double flops) =>
        profile.Cores > 0 && profile.FlopsPerCore > 0 ? flops / (profile.Cores * profile.FlopsPerCore) * 1e3 : 0;

    /// <summary>
    /// The time one call really spends on the link: attempts of a jittered round trip (<see cref="NetworkMs"/> moved
    /// by a uniform draw in [-jitter, +jitter]) until one is not lost; a lost attempt costs its whole time, the
    /// timeout after which it is sent again. Its mean is <see cref="NetworkMs"/> / (1 - loss), the latency model's.
    /// </summary>
    public static double DrawNetworkMs(this EdgeProfile profile, long bytesUp, long bytesDown, Random random)
    {
        double attemptMs = profile.NetworkMs(bytesUp, bytesDown), total = 0;
        while (true)
        {
            total += attemptMs + profile.JitterMs * (2 * random.NextDouble() - 1);
            if (profile.Loss == 0 || random.NextDouble() >= profile.Loss) return total;
        }
    }

    /// <summary>The link's time for one round trip carrying the given bytes (0 for the parts the profile leaves unset).</summary>
    public static double NetworkMs(this EdgeProfile profile, long bytesUp, long bytesDown) =>
        profile.RoundTripMs
        + (profile.UpMbps > 0 ? bytesUp * 8 / (profile.UpMbps * 1e6) * 1e3 : 0)
        + (profile.DownMbps > 0 ? bytesDown * 8 / (profile.DownMbps * 1e6) * 1e3 : 0);

    /// <summary>
    /// Holds back a real <paramref name="answer"/>, whose work began at <paramref name="started"/>, until the profile's
    /// device would have computed it (the profile's time for <paramref name="flops"/>) and the link carried it both ways
    /// (a <see cref="DrawNetworkMs"/> draw). The emulator's own work (the plugin, and any wait for a shared worker)
    /// happens within that time, as a real device's would not; only what outlasts it makes the answer late, and then
    /// counts as the device's compute.
    /// </summary>
    public static async Task<EdgeAnswer> Emulate(this EdgeProfile profile, EdgeCall call, EdgeAnswer answer, double flops, long started)
    {
        double computeMs = profile.ComputeMs(flops);
        double networkMs = profile.DrawNetworkMs(4L * call.Input.Data.Length, 4L * answer.Output.Data.Length, Random.Shared);
        double workMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds, dueMs = computeMs + networkMs;
        // Task.Delay counts whole milliseconds: a truncated wait would deliver the answer before its link could have.
        for (double waitedMs = workMs; waitedMs < dueMs; waitedMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds)
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Ceiling(dueMs - waitedMs)));
        return answer with { EdgeMs = Math.Max(computeMs, workMs - networkMs) };
    }
}
