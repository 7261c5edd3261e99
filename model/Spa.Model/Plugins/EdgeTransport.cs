using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// The boundary between the cloud and a user's device. Every tensor that crosses it goes through <see cref="ToEdge"/>
/// or <see cref="ToCloud"/>, which apply the wire encoding (so its rounding affects the result exactly as a real
/// deployment's would) and count the bytes it takes; every call to the device is one round trip. The rows of a step
/// that belong to one request (the beams of a beam search) travel in one call, so they make one round trip.
/// Counts are per transport: one per generation, or one per evaluation.
/// </summary>
public sealed class EdgeTransport(ActivationType activation)
{
    private IReadOnlyList<int>? _requestOfRow;

    public ActivationType Activation { get; } = activation;
    public long RoundTrips { get; private set; }
    public long BytesUp { get; private set; }
    public long BytesDown { get; private set; }

    /// <summary>
    /// Starts a step whose row b belongs to request <c>requestOfRow[b]</c>. Until the first call, every row is a request of
    /// its own.
    /// </summary>
    public void BeginStep(IReadOnlyList<int> requestOfRow) => _requestOfRow = requestOfRow;

    /// <summary>Records the calls that rows <paramref name="rows"/> of the current step make: one per request among them.</summary>
    public void RoundTrip(IEnumerable<int> rows) =>
        RoundTrips += _requestOfRow is { } requests ? rows.Select(r => requests[r]).Distinct().Count() : rows.Count();

    /// <summary>Records the calls that the first <paramref name="rows"/> rows of the current step make (every row asked).</summary>
    public void RoundTrip(int rows) => RoundTrip(Enumerable.Range(0, rows));

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
