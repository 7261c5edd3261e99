namespace Spa.Model.Latency;

/// <summary>An edge device: what runs the side network. T_edge = FLOPs / (cores * FLOP/s per core).</summary>
/// <param name="FlopsPerCore">Effective FLOP/s of one core on the side network's small fp32 matrix products, not the
/// vendor's peak: these products are too small to keep the vector units busy.</param>
public sealed record DeviceProfile(string Name, int Cores, double FlopsPerCore)
{
    public int Cores { get; init; } = Checks.Positive(Cores, nameof(Cores));

    public double FlopsPerCore { get; init; } = Checks.Positive(FlopsPerCore, nameof(FlopsPerCore));

    public double Flops => Cores * FlopsPerCore;
}

/// <summary>The network between the cloud and a device. Mbit/s are 1e6 bits per second.</summary>
/// <param name="JitterMs">Spread of a round trip's time for emulated links (a zero-mean uniform draw in
/// [-JitterMs, +JitterMs]). The analytic model uses means only, so jitter does not change its prediction.</param>
/// <param name="Loss">Fraction of transmissions an emulated link drops (0..1). A lost transmission is sent again after
/// a timeout of one round trip, so a call takes 1 / (1 - Loss) round trips on average (loss / (1 - loss) extra ones),
/// which the analytic model counts.</param>
public sealed record LinkProfile(string Name, double RoundTripMs, double UpMbps, double DownMbps, double JitterMs = 0, double Loss = 0)
{
    public double RoundTripMs { get; init; } = Checks.NonNegative(RoundTripMs, nameof(RoundTripMs));

    public double UpMbps { get; init; } = Checks.Positive(UpMbps, nameof(UpMbps));

    public double DownMbps { get; init; } = Checks.Positive(DownMbps, nameof(DownMbps));

    public double JitterMs { get; init; } = Checks.NonNegative(JitterMs, nameof(JitterMs));

    public double Loss { get; init; } = Loss is >= 0 and < 1 ? Loss : throw new ArgumentOutOfRangeException(nameof(Loss), Loss, "loss must be in [0, 1)");

    /// <summary>Mean attempts per round trip when a lost transmission is sent again: 1 / (1 - loss).</summary>
    public double AttemptsPerRoundTrip => 1 / (1 - Loss);

    /// <summary>Milliseconds to push <paramref name="bytes"/> from the cloud to the device.</summary>
    public double UpMs(double bytes) => bytes * 8 / (UpMbps * 1e6) * 1e3;

    /// <summary>Milliseconds to push <paramref name="bytes"/> from the device back to the cloud.</summary>
    public double DownMs(double bytes) => bytes * 8 / (DownMbps * 1e6) * 1e3;
}

/// <summary>
/// The cloud accelerator that runs the base, for the analytic cloud time of one decoding step (used only when no
/// measured time is given). Batch-1 decoding reads every weight once per token, so it is usually bound by memory
/// bandwidth rather than arithmetic: T_cloud = max(FLOPs / <see cref="Flops"/>, bytes / <see cref="MemoryBandwidthBytesPerS"/>).
/// </summary>
/// <param name="Flops">Effective FLOP/s of the whole accelerator on the base's matrix products.</param>
/// <param name="MemoryBandwidthBytesPerS">Bytes per second the accelerator streams from its memory.</param>
/// <param name="BytesPerParameter">Storage of one weight (and one cached key/value) in the serving precision.</param>
public sealed record CloudProfile(string Name, double Flops, double MemoryBandwidthBytesPerS, double BytesPerParameter = 2)
{
    public double Flops { get; init; } = Checks.Positive(Flops, nameof(Flops));

    public double MemoryBandwidthBytesPerS { get; init; } = Checks.Positive(MemoryBandwidthBytesPerS, nameof(MemoryBandwidthBytesPerS));

    public double BytesPerParameter { get; init; } = Checks.Positive(BytesPerParameter, nameof(BytesPerParameter));
}

/// <summary>Built-in profiles, looked up by name from command lines and configuration.</summary>
public static class Profiles
{
    /// <summary>
    /// A current mid-range phone: 8 Arm cores (big.LITTLE). A Cortex-A78-class big core peaks near 38 GFLOP/s fp32
    /// (2 x 128-bit FMA at 2.4 GHz) and a Cortex-A55 little core near 14; on matrices of a few thousand elements,
    /// with a mobile runtime's per-operation overhead, about 5 GFLOP/s per core is what is delivered.
    /// </summary>
    public static readonly DeviceProfile Phone = new("phone", Cores: 8, FlopsPerCore: 5e9);

    /// <summary>
    /// A laptop with 8 x86 cores: AVX2 with two 256-bit FMA units at ~3 GHz peaks near 100 GFLOP/s fp32 per core;
    /// small matrix products reach about a fifth of that, 20 GFLOP/s.
    /// </summary>
    public static readonly DeviceProfile Laptop = new("laptop", Cores: 8, FlopsPerCore: 20e9);

    /// <summary>
    /// A server node beside the cloud's, as in the SPA paper's Table 2, where the side model ran on a machine of the same
    /// cluster: 32 cores at the laptop's effective 20 GFLOP/s each. The side network's few FLOPs take microseconds here.
    /// </summary>
    public static readonly DeviceProfile Server = new("server", Cores: 32, FlopsPerCore: 20e9);

    /// <summary>
    /// LTE to a cloud region: median round trips of 50-70 ms and typical throughput of about 10 Mbit/s up and
    /// 30 Mbit/s down in operator and crowd-sourced measurements (e.g. Opensignal's mobile network reports).
    /// Jitter and loss are zero so that an emulated run reproduces the analytic mean; give them explicitly for
    /// stress runs.
    /// </summary>
    public static readonly LinkProfile Lte = new("4g", RoundTripMs: 60, UpMbps: 10, DownMbps: 30);

    /// <summary>
    /// Sub-6 GHz 5G (non-standalone, as most deployments are): round trips around 20 ms to a nearby region,
    /// about 50 Mbit/s up and 200 Mbit/s down. Jitter and loss are zero, as for <see cref="Lte"/>.
    /// </summary>
    public static readonly LinkProfile FiveG = new("5g", RoundTripMs: 20, UpMbps: 50, DownMbps: 200);

    /// <summary>
    /// Home or office Wi-Fi on a fibre line to a nearby region: about 10 ms round trip, 100 Mbit/s up and
    /// 300 Mbit/s down. Jitter and loss are zero, as for <see cref="Lte"/>.
    /// </summary>
    public static readonly LinkProfile Wifi = new("wifi", RoundTripMs: 10, UpMbps: 100, DownMbps: 300);

    /// <summary>
    /// A data-centre network between two servers of one cluster, the paper's "ideal network environment" of Table 2:
    /// 0.3 ms round trips (a few hundred microseconds through two top-of-rack hops and the RPC stacks) and 10 Gbit/s
    /// each way. Jitter and loss are zero, as for <see cref="Lte"/>.
    /// </summary>
    public static readonly LinkProfile Lan = new("lan", RoundTripMs: 0.3, UpMbps: 10_000, DownMbps: 10_000);

    /// <summary>
    /// NVIDIA A100 serving fp16 weights: 312 TFLOP/s dense fp16 tensor-core peak of which about a third is reached
    /// by decoding-sized products (100 TFLOP/s), and 1.555 TB/s HBM2 bandwidth (40 GB part; 1.5e12 B/s effective).
    /// Batch-1 decoding of a 7B model is therefore memory bound: ~13 GB of weights take ~9 ms per token.
    /// </summary>
    public static readonly CloudProfile A100 = new("a100", Flops: 100e12, MemoryBandwidthBytesPerS: 1.5e12, BytesPerParameter: 2);

    /// <summary>
    /// A CPU server of the kind these machines are: a 2-vCPU AMD EPYC (Zen 3) virtual machine running libtorch's
    /// CPU build in fp32. Two 256-bit FMA units at ~2.45 GHz peak near 78 GFLOP/s per core; libtorch's fp32 GEMM
    /// reaches about 50, so 100 GFLOP/s for the two cores. Two cores stream about 25 GB/s from DRAM. Models small
    /// enough to sit in cache (stories260K) run faster than this bandwidth says, and their time is dominated by
    /// per-operation overhead the model does not describe: measure them instead.
    /// </summary>
    public static readonly CloudProfile Cpu = new("cpu", Flops: 100e9, MemoryBandwidthBytesPerS: 25e9, BytesPerParameter: 4);

    public static IReadOnlyList<DeviceProfile> Devices { get; } = [Phone, Laptop, Server];

    public static IReadOnlyList<LinkProfile> Links { get; } = [Lte, FiveG, Wifi, Lan];

    public static IReadOnlyList<CloudProfile> Clouds { get; } = [A100, Cpu];

    public static DeviceProfile Device(string name) => Find(Devices, d => d.Name, name, "device profile");

    public static LinkProfile Link(string name) => Find(Links, l => l.Name, name, "link profile");

    public static CloudProfile Cloud(string name) => Find(Clouds, c => c.Name, name, "cloud profile");

    private static T Find<T>(IReadOnlyList<T> known, Func<T, string> nameOf, string name, string what) =>
        known.FirstOrDefault(p => string.Equals(nameOf(p), name.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown {what} '{name}': use one of {string.Join(", ", known.Select(nameOf))}", nameof(name));
}
