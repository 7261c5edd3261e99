using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>
/// Moves raw tensor bytes between a stream and a contiguous CPU tensor's own storage, with no intermediate array.
/// </summary>
internal static class TensorStreams
{
    // A Span<byte> addresses at most 2 GiB, and a single tensor of a large model (an fp32 embedding) can be bigger.
    private const long ChunkBytes = 1L << 28;

    public static void ReadExactly(Stream stream, torch.Tensor tensor)
    {
        foreach (var part in Chunks(tensor))
            using (part) stream.ReadExactly(part.bytes);
    }

    public static void Write(Stream stream, torch.Tensor tensor)
    {
        foreach (var part in Chunks(tensor))
            using (part) stream.Write(part.bytes);
    }

    private static IEnumerable<torch.Tensor> Chunks(torch.Tensor tensor)
    {
        // Checkpoint files are little-endian, which is the in-memory layout only on little-endian machines.
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("checkpoint files are little-endian; big-endian machines are not supported");
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new ArgumentException("tensor bytes can only be streamed from a contiguous CPU tensor", nameof(tensor));
        using var flat = tensor.view(-1);
        long count = flat.shape[0];
        long perChunk = ChunkBytes / tensor.ElementSize;
        for (long start = 0; start < count; start += perChunk)
            yield return flat.narrow(0, start, Math.Min(perChunk, count - start));
    }
}
