using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// The boundary between the cloud and a user's device. Every tensor that crosses it goes through <see cref="ToEdge"/>
/// or <see cref="ToCloud"/>, which apply the wire encoding (so its rounding affects the result exactly as a real
/// deployment's would) and count the bytes it takes; every call to the device is one <see cref="RoundTrip"/>.
/// Counts are per transport: one per generation, or one per evaluation.
/// </summary>
public sealed class EdgeTransport(ActivationType activation)
{
    public ActivationType Activation { get; } = activation;
    public long RoundTrips { get; private set; }
    public long BytesUp { get; private set; }
    public long BytesDown { get; private set; }

    /// <summary>Records calls to the device, one per sequence in the batch that asked.</summary>
    public void RoundTrip(long sequences = 1) => RoundTrips += sequences;

    /// <summary>x: [..., n], a batch of vectors sent cloud to edge. Returns what the edge receives.</summary>
    public Tensor ToEdge(Tensor x)
    {
        BytesUp += WireBytes(x, Activation);
        return Encode(x, Activation);
    }

    /// <summary>x: [..., n], a batch of vectors returned edge to cloud. Returns what the cloud receives.</summary>
    public Tensor ToCloud(Tensor x)
    {
        BytesDown += WireBytes(x, Activation);
        return Encode(x, Activation);
    }

    /// <summary>Bytes to send x: n values of 4, 2 or 1 bytes per vector, int8 adding one fp32 scale per vector.</summary>
    public static long WireBytes(Tensor x, ActivationType activation)
    {
        long values = x.NumberOfElements;
        long vectors = values / x.shape[^1];
        return activation switch
        {
            ActivationType.Fp32 => 4 * values,
            ActivationType.Fp16 => 2 * values,
            ActivationType.Int8 => values + 4 * vectors,
            _ => throw new ArgumentOutOfRangeException(nameof(activation)),
        };
    }

    /// <summary>x as it arrives after encoding and decoding: fp16 rounding, or symmetric int8 with a per-vector scale.</summary>
    public static Tensor Encode(Tensor x, ActivationType activation)
    {
        using var scope = NewDisposeScope();
        var result = activation switch
        {
            ActivationType.Fp32 => x.alias(),
            ActivationType.Fp16 => x.to(ScalarType.Float16).to(x.dtype),
            ActivationType.Int8 => QuantiseInt8(x),
            _ => throw new ArgumentOutOfRangeException(nameof(activation)),
        };
        return result.MoveToOuterDisposeScope();
    }

    // Held Scalars, not per-call implicit conversions: see RmsNorm.
    private static readonly Scalar Levels = 127.0.ToScalar();
    private static readonly Scalar NegativeLevels = (-127.0).ToScalar();
    private static readonly Scalar Tiny = 1e-12.ToScalar();

    private static Tensor QuantiseInt8(Tensor x)
    {
        var scale = x.abs().amax([-1L], keepdim: true).div_(Levels).clamp_min_(Tiny);
        return x.div(scale).round_().clamp_(NegativeLevels, Levels).mul_(scale);
    }
}
