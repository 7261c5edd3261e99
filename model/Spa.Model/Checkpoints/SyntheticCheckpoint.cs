using System.Buffers.Binary;
using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>
/// llama2.c checkpoints of published models' shapes filled with random weights, so that loading, memory and decoding
/// are measured at real tensor sizes (any number of layers) without downloading a model. The weights are drawn
/// from N(0, 0.02²), the norms' gains are 1, so activations stay finite and decoding does the real arithmetic.
/// </summary>
public static class SyntheticCheckpoint
{
    /// <summary>The shapes by name. LLaMA-7B: Touvron et al. (2023), with its untied output layer and 2,048 positions.</summary>
    public static IReadOnlyDictionary<string, LlamaConfig> Shapes { get; } = new Dictionary<string, LlamaConfig>
    {
        ["llama-7b"] = new(Dim: 4096, HiddenDim: 11008, Layers: 32, Heads: 32, KvHeads: 32, VocabSize: 32000,
            MaxSeqLen: 2048, TiedEmbedding: false, Rope: RopeStyle.Interleaved),
    };

    private const long ChunkElements = 1L << 24;

    public static LlamaConfig Shape(string name, int layers)
    {
        if (!Shapes.TryGetValue(name, out var shape))
            throw new ArgumentException($"unknown synthetic shape '{name}'; known: {string.Join(", ", Shapes.Keys)}", nameof(name));
        if (layers <= 0) throw new ArgumentOutOfRangeException(nameof(layers), layers, "a model needs at least one layer");
        return shape with { Layers = layers };
    }

    /// <summary>
    /// The checkpoint of <paramref name="name"/> with <paramref name="layers"/> layers in <paramref name="folder"/>,
    /// written first when it is not there yet (to a temporary name, then renamed, so an interrupted write is never used).
    /// </summary>
    public static string Ensure(string folder, string name, int layers, int seed = 1, IProgress<double>? progress = null)
    {
        var config = Shape(name, layers);
        string path = Path.Combine(folder, $"{name}-{layers}-layers-seed{seed}.bin");
        if (File.Exists(path)) return path;
        Directory.CreateDirectory(folder);
        string partial = $"{path}.partial-{Guid.NewGuid():N}";
        try
        {
            Write(partial, config, seed, progress);
            File.Move(partial, path, overwrite: true);
        }
        finally
        {
            File.Delete(partial);
        }
        return path;
    }

    /// <summary>Writes a llama2.c (version 0) checkpoint of <paramref name="config"/> with random weights.</summary>
    public static void Write(string path, LlamaConfig config, int seed, IProgress<double>? progress = null)
    {
        config.Validate();
        var shapes = WeightNames.Expected(config).ToDictionary(e => e.Name, e => e.Shape);
        var order = Llama2cCheckpointReader.LayerSectionOrder(config).ToList();
        if (!config.TiedEmbedding) order.Add(WeightNames.LmHead);
        double total = order.Sum(n => (double)Elements(shapes[n])), written = 0;

        using var generator = new torch.Generator((ulong)seed);
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> header = stackalloc byte[7 * sizeof(int)];
        int[] fields = [config.Dim, config.HiddenDim, config.Layers, config.Heads, config.KvHeads,
            config.TiedEmbedding ? config.VocabSize : -config.VocabSize, config.MaxSeqLen];
        for (int i = 0; i < fields.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(header[(i * sizeof(int))..], fields[i]);
        stream.Write(header);

        foreach (var name in order)
        {
            if (name == WeightNames.LmHead) WriteRopeTables(stream, config);
            bool gain = shapes[name].Length == 1; // the norms
            for (long left = Elements(shapes[name]); left > 0; left -= ChunkElements)
            {
                long count = Math.Min(left, ChunkElements);
                using var chunk = gain
                    ? torch.ones(count, torch.ScalarType.Float32)
                    : torch.randn(count, torch.ScalarType.Float32, generator: generator).mul_(0.02);
                TensorStreams.Write(stream, chunk);
                written += count;
                progress?.Report(written / total);
            }
        }
        if (config.TiedEmbedding) WriteRopeTables(stream, config);
    }

    /// <summary>llama2.c's freq_cis_real and freq_cis_imag, [seq, headDim / 2] each, as its export.py writes them.</summary>
    private static void WriteRopeTables(Stream stream, LlamaConfig config)
    {
        using var scope = torch.NewDisposeScope();
        var frequencies = torch.pow(config.RopeTheta, torch.arange(0, config.HeadDim, 2, torch.ScalarType.Float64).div(config.HeadDim)).reciprocal();
        var angles = torch.outer(torch.arange(config.MaxSeqLen, torch.ScalarType.Float64), frequencies);
        TensorStreams.Write(stream, angles.cos().to_type(torch.ScalarType.Float32).contiguous());
        TensorStreams.Write(stream, angles.sin().to_type(torch.ScalarType.Float32).contiguous());
    }

    private static long Elements(long[] shape) => shape.Aggregate(1L, (product, d) => product * d);
}
