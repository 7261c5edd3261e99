using System.Buffers.Binary;
using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>
/// Reads a llama2.c checkpoint (the legacy, version-0 layout of Karpathy's export.py): seven little-endian int32
/// dimensions, then fp32 tensors grouped by kind across all layers, then RoPE tables, then the classifier if untied.
/// </summary>
public static class Llama2cCheckpointReader
{
    private const int HeaderBytes = 7 * sizeof(int);

    // Later export.py versions start with this magic ("ak42") and a 256-byte header instead of the dimensions.
    private const uint VersionedExportMagic = 0x616b3432;

    /// <summary>Every weight as fp32, in memory.</summary>
    public static Checkpoint Read(string binPath) => Layout(binPath).ReadAll();

    /// <summary>The config and where each tensor lies, from the header and the file's size; no weight is read.</summary>
    public static CheckpointLayout Layout(string binPath)
    {
        string file = Path.GetFileName(binPath);
        LlamaConfig config;
        long length;
        using (var stream = File.OpenRead(binPath))
        {
            config = ReadHeader(stream, file);
            length = stream.Length;
        }

        long expected = ExpectedFileBytes(config, file);
        if (length != expected)
            throw new InvalidDataException(
                $"{file}: size {length} bytes does not match the {expected} bytes its header implies ({Describe(config)}); "
                + (length < expected ? "the file is truncated or corrupted" : "the file has trailing bytes or is not a llama2.c checkpoint"));

        var shapes = WeightNames.Expected(config).ToDictionary(e => e.Name, e => e.Shape);
        var tensors = new List<StoredTensor>();
        long offset = HeaderBytes;
        void Add(string name)
        {
            var stored = new StoredTensor(name, shapes[name], torch.ScalarType.Float32, binPath, offset);
            tensors.Add(stored);
            offset += stored.Bytes;
        }
        foreach (var name in LayerSectionOrder(config)) Add(name);
        if (!config.TiedEmbedding)
        {
            offset += (long)RopeTableFloats(config) * sizeof(float);
            Add(WeightNames.LmHead);
        }
        return new CheckpointLayout(config, tensors, binPath);
    }

    private static LlamaConfig ReadHeader(Stream stream, string file)
    {
        var header = new byte[HeaderBytes];
        if (stream.Length < HeaderBytes)
            throw new InvalidDataException($"{file}: size {stream.Length} bytes is too small to hold the {HeaderBytes}-byte llama2.c header");
        stream.ReadExactly(header);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) == VersionedExportMagic)
            throw new InvalidDataException(
                $"{file}: this is a versioned llama2.c export (magic \"ak42\"); only the legacy version-0 layout is supported, "
                + "re-export it with export.py --version 0");

        int Field(int i) => BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(i * sizeof(int)));
        int vocab = Field(5);
        var config = new LlamaConfig(
            Dim: Field(0), HiddenDim: Field(1), Layers: Field(2), Heads: Field(3), KvHeads: Field(4),
            // A negative vocabulary size is how llama2.c marks a separate classifier. Unary minus leaves int.MinValue
            // negative, so Validate rejects it rather than Math.Abs throwing an OverflowException.
            VocabSize: vocab > 0 ? vocab : -vocab,
            MaxSeqLen: Field(6), TiedEmbedding: vocab > 0, Rope: RopeStyle.Interleaved, BosId: 1, EosId: 2);
        try
        {
            config.Validate();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{file}: the header does not describe a llama2.c model ({e.Message}); the file is corrupted or in another format", e);
        }
        return config;
    }

    /// <summary>The file order: each kind of tensor for every layer before the next kind, w1, w2, w3 = gate, down, up.</summary>
    internal static IEnumerable<string> LayerSectionOrder(LlamaConfig config)
    {
        Func<int, string>[] kinds =
        [
            WeightNames.AttentionNorm, WeightNames.Query, WeightNames.Key, WeightNames.Value, WeightNames.Output,
            WeightNames.MlpNorm, WeightNames.Gate, WeightNames.Down, WeightNames.Up,
        ];
        yield return WeightNames.Embedding;
        foreach (var kind in kinds)
            for (int layer = 0; layer < config.Layers; layer++)
                yield return kind(layer);
        yield return WeightNames.FinalNorm;
    }

    // freq_cis_real and freq_cis_imag, [seq, headDim / 2] each: the model recomputes them, but they sit before the classifier.
    internal static Int128 RopeTableFloats(LlamaConfig c) => 2 * (Int128)c.MaxSeqLen * (c.HeadDim / 2);

    /// <summary>
    /// Computed from the format rather than by walking <see cref="WeightNames.Expected"/>, whose length grows with a
    /// layer count that a corrupted header may put in the billions. The header is untrusted in another way too:
    /// products of its int32 fields overflow a long, but not an Int128.
    /// </summary>
    private static long ExpectedFileBytes(LlamaConfig c, string file)
    {
        Int128 dim = c.Dim, hidden = c.HiddenDim, kv = (Int128)c.KvHeads * c.HeadDim, vocab = c.VocabSize;
        Int128 perLayer = 2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim;
        Int128 floats = vocab * dim * (c.TiedEmbedding ? 1 : 2) + c.Layers * perLayer + dim + RopeTableFloats(c);
        Int128 total = HeaderBytes + floats * sizeof(float);
        if (total > long.MaxValue)
            throw new InvalidDataException($"{file}: its header ({Describe(c)}) implies {total} bytes, more than any file can hold; the file is corrupted");
        return (long)total;
    }

    private static string Describe(LlamaConfig c) =>
        $"dim {c.Dim}, hidden {c.HiddenDim}, layers {c.Layers}, heads {c.Heads}, kv heads {c.KvHeads}, "
        + $"vocab {c.VocabSize} ({(c.TiedEmbedding ? "tied" : "separate")} classifier), seq {c.MaxSeqLen}";
}
