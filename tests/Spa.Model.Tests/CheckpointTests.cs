using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Spa.Model.Checkpoints;
using TorchSharp;
using Spa.Testing;

namespace Spa.Model.Tests;

public sealed class CheckpointTests : IDisposable
{
    // llama2.c's export writes 7 int32 dimensions before the first tensor.
    private const int Llama2cHeaderBytes = 28;

    private readonly string _temp = Path.Combine(Path.GetTempPath(), "spa-checkpoint-tests-" + Guid.NewGuid().ToString("N"));

    public CheckpointTests() => Directory.CreateDirectory(_temp);

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    // ---- llama2.c ----

    [Fact]
    public void Llama2cStories260KHasTheDocumentedConfigAndEveryExpectedTensor()
    {
        using var checkpoint = Llama2cCheckpointReader.Read(SharedData.Stories260KBin);
        var c = checkpoint.Config;
        Assert.Equal((64, 172, 5, 8, 4, 512, 512), (c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, c.VocabSize, c.MaxSeqLen));
        Assert.True(c.TiedEmbedding);
        Assert.Equal(RopeStyle.Interleaved, c.Rope);
        Assert.Equal((1, 2), (c.BosId, c.EosId));

        var expected = WeightNames.Expected(c).ToList();
        Assert.Equal(expected.Count, checkpoint.Tensors.Count);
        foreach (var (name, shape) in expected)
        {
            var tensor = checkpoint.Tensors[name];
            Assert.Equal(shape, tensor.shape);
            Assert.Equal(torch.ScalarType.Float32, tensor.dtype);
        }
    }

    [Fact]
    public void Llama2cTensorsHoldTheBytesAtTheirFileOffsets()
    {
        using var checkpoint = Llama2cCheckpointReader.Read(SharedData.Stories260KBin);
        var c = checkpoint.Config;
        long dim = c.Dim, hidden = c.HiddenDim, kv = c.KvHeads * c.HeadDim, layers = c.Layers;

        // Offsets in floats, walking the file's kind-by-kind layout independently of the reader.
        long embedding = 0;
        long attentionNorms = embedding + c.VocabSize * dim;
        long wq = attentionNorms + layers * dim;
        long wk = wq + layers * dim * dim;
        long wv = wk + layers * kv * dim;
        long wo = wv + layers * kv * dim;
        long mlpNorms = wo + layers * dim * dim;
        long w1 = mlpNorms + layers * dim;
        long w2 = w1 + layers * hidden * dim;
        long w3 = w2 + layers * dim * hidden;
        long finalNorm = w3 + layers * hidden * dim;

        var bosRow = FloatsAt(SharedData.Stories260KBin, embedding + c.BosId * dim, (int)dim);
        Assert.All(bosRow, v => Assert.True(float.IsFinite(v)));
        Assert.Contains(bosRow, v => v != 0);
        Assert.Equal(bosRow, Row(checkpoint.Tensors[WeightNames.Embedding], c.BosId));

        Assert.Equal(FloatsAt(SharedData.Stories260KBin, wk + 1 * kv * dim, (int)dim), Row(checkpoint.Tensors[WeightNames.Key(1)], 0));
        Assert.Equal(FloatsAt(SharedData.Stories260KBin, w1 + 3 * hidden * dim, (int)dim), Row(checkpoint.Tensors[WeightNames.Gate(3)], 0));
        Assert.Equal(FloatsAt(SharedData.Stories260KBin, w2 + 2 * dim * hidden, (int)hidden), Row(checkpoint.Tensors[WeightNames.Down(2)], 0));
        Assert.Equal(FloatsAt(SharedData.Stories260KBin, w3 + 4 * hidden * dim + (hidden - 1) * dim, (int)dim),
            Row(checkpoint.Tensors[WeightNames.Up(4)], hidden - 1));
        Assert.Equal(FloatsAt(SharedData.Stories260KBin, finalNorm, (int)dim), checkpoint.Tensors[WeightNames.FinalNorm].data<float>().ToArray());
    }

    [Theory]
    [InlineData(-1000, "truncated")]
    [InlineData(4, "trailing")]
    public void Llama2cWrongSizeIsRejectedWithBothSizes(int change, string reason)
    {
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        var resized = new byte[bytes.Length + change];
        Array.Copy(bytes, resized, Math.Min(bytes.Length, resized.Length));
        string path = WriteTemp("stories260K.bin", resized);

        var e = Assert.Throws<InvalidDataException>(() => Llama2cCheckpointReader.Read(path));
        Assert.Contains($"size {resized.Length} bytes", e.Message);
        Assert.Contains($"the {bytes.Length} bytes its header implies", e.Message);
        Assert.Contains("dim 64", e.Message);
        Assert.Contains(reason, e.Message);
    }

    [Theory]
    [InlineData(new[] { 65, 172, 5, 8, 4, 512, 512 }, "not a multiple of the head count")]
    [InlineData(new[] { 64, -172, 5, 8, 4, 512, 512 }, "must be positive")]
    [InlineData(new[] { 64, 172, 5, 8, 4, int.MinValue, 512 }, "must be positive")]
    [InlineData(new[] { 1 << 30, 1 << 30, 1 << 30, 2, 2, 1 << 30, 1 << 30 }, "more than any file can hold")]
    [InlineData(new[] { 64, 172, 500_000_000, 8, 4, 512, 512 }, "does not match")]
    [InlineData(new[] { 0x616b3432, 1, 64, 172, 5, 8, 4 }, "version-0")]
    public void Llama2cNonsenseHeaderGivesAClearError(int[] header, string expected)
    {
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        for (int i = 0; i < header.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), header[i]);
        string path = WriteTemp("broken.bin", bytes);

        var e = Assert.Throws<InvalidDataException>(() => Llama2cCheckpointReader.Read(path));
        Assert.Contains("broken.bin", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Llama2cNaNWeightIsRejectedNamingTheTensor()
    {
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        // The first value of the first layer's wq, right after the embedding and the attention norms.
        long offset = Llama2cHeaderBytes + 4L * (512 * 64 + 5 * 64);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)offset), float.NaN);
        string path = WriteTemp("nan.bin", bytes);

        var e = Assert.Throws<InvalidDataException>(() => Llama2cCheckpointReader.Read(path));
        Assert.Contains("non-finite", e.Message);
        Assert.Contains(WeightNames.Query(0), e.Message);
    }

    // ---- safetensors ----

    [Theory]
    [InlineData(SafetensorsDtype.F32, 0.0)]
    [InlineData(SafetensorsDtype.F16, 1.0 / 2048)]
    [InlineData(SafetensorsDtype.BF16, 1.0 / 256)]
    public void SafetensorsRoundTripKeepsValuesWithinTheDtypePrecision(SafetensorsDtype dtype, double relativePrecision)
    {
        torch.manual_seed(7);
        using var random = torch.randn(3, 5, 7);
        using var exact = torch.arange(-8, 8, dtype: torch.ScalarType.Float32) * 0.25f; // representable in all three dtypes
        using var empty = torch.zeros(0, 4);
        var tensors = new Dictionary<string, torch.Tensor> { ["z.random"] = random, ["a.exact"] = exact, ["m.empty"] = empty };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "round trip" };
        string path = Path.Combine(_temp, "round.safetensors");

        SafetensorsFile.Write(path, tensors, dtype, metadata);

        var bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + headerLength) % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.True(header.IndexOf("a.exact") < header.IndexOf("m.empty") && header.IndexOf("m.empty") < header.IndexOf("z.random"));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(metadata, file.Metadata);
        Assert.Equal(["a.exact", "m.empty", "z.random"], file.Entries.Keys.Order());
        foreach (var (name, source) in tensors)
        {
            Assert.Equal(dtype.ToString(), file.Entries[name].Dtype);
            using var read = file.Read(name);
            Assert.Equal(torch.ScalarType.Float32, read.dtype);
            Assert.Equal(source.shape, read.shape);
            var expected = Values(source);
            var actual = Values(read);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(actual[i] - expected[i]) <= relativePrecision * Math.Abs(expected[i]), $"{name}[{i}]: {actual[i]} vs {expected[i]}");
        }
        using var exactRead = file.Read("a.exact");
        Assert.True(exact.bytes.SequenceEqual(exactRead.bytes));
    }

    [Fact]
    public void SafetensorsValueBeyondF16RangeIsRefusedRatherThanWrittenAsInfinity()
    {
        using var large = torch.tensor(new[] { 1f, 70000f });
        var e = Assert.Throws<ArgumentException>(() =>
            SafetensorsFile.Write(Path.Combine(_temp, "large.safetensors"), new Dictionary<string, torch.Tensor> { ["large"] = large }, SafetensorsDtype.F16));
        Assert.Contains("F16 cannot represent", e.Message);
    }

    [Fact]
    public void SafetensorsReadsAHandWrittenFile()
    {
        // 1.0 and -2.0 in F16 are 0x3C00 and 0xC000; 1.0 in BF16 is 0x3F80; 0.5 in F32 is 0x3F000000.
        string header = """{"__metadata__":{"k":"v"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]},"f":{"dtype":"F32","shape":[],"data_offsets":[6,10]},"i":{"dtype":"I64","shape":[1],"data_offsets":[10,18]}}""";
        byte[] data = [0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x3F, 1, 0, 0, 0, 0, 0, 0, 0];
        string path = WriteSafetensors("hand.safetensors", header, data);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal("v", file.Metadata["k"]);
        using var h = file.Read("h");
        using var b = file.Read("b");
        using var f = file.Read("f");
        Assert.Equal([1f, -2f], h.data<float>().ToArray());
        Assert.Equal([1L, 1L], b.shape);
        Assert.Equal(1f, b.data<float>()[0]);
        Assert.Empty(f.shape);
        Assert.Equal(0.5f, f.item<float>());
        var e = Assert.Throws<InvalidDataException>(() => file.Read("i"));
        Assert.Contains("I64", e.Message);
    }

    [Theory]
    [InlineData("""{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}""", 8, "not valid JSON")]
    [InlineData("""[1, 2]""", 0, "not a JSON object")]
    [InlineData("""{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "cover 16 bytes")]
    [InlineData("""{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "trailing")]
    [InlineData("""{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "needs 12 bytes")]
    [InlineData("""{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "starts at data offset 4")]
    [InlineData("""{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "overlap")]
    [InlineData("""{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8, "non-negative integer")]
    [InlineData("""{"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8, "not a [begin, end] pair")]
    [InlineData("""{"t":{"shape":[2],"data_offsets":[0,8]}}""", 8, "lacks a dtype")]
    [InlineData("""{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}""", 8, "impossibly large")]
    public void SafetensorsCorruptedHeaderIsRejected(string header, int dataBytes, string expected)
    {
        string path = WriteSafetensors("bad.safetensors", header, new byte[dataBytes]);
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains("bad.safetensors", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void SafetensorsHeaderLengthBeyondTheFileIsRejected()
    {
        var bytes = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1_000_000);
        string path = WriteTemp("long.safetensors", bytes);
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains("header length 1000000", e.Message);
    }

    // ---- Hugging Face layout and conversion ----

    [Fact]
    public void ConvertSingleFilePreservesEveryTensorAndPermutesQueryAndKey()
    {
        string outDir = Path.Combine(_temp, "hf");
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260K, outDir);

        Assert.True(File.Exists(Path.Combine(outDir, "model.safetensors")));
        Assert.False(File.Exists(Path.Combine(outDir, "model.safetensors.index.json")));
        Assert.Equal(Path.Combine(outDir, "tok512.bin"), CheckpointLoader.FindTokenizer(outDir));
        Assert.Equal(File.ReadAllBytes(SharedData.Tok512), File.ReadAllBytes(Path.Combine(outDir, "tok512.bin")));
        using var file = SafetensorsFile.Open(Path.Combine(outDir, "model.safetensors"));
        Assert.Equal("pt", file.Metadata["format"]);

        using var source = Llama2cCheckpointReader.Read(SharedData.Stories260KBin);
        using var converted = CheckpointLoader.Load(outDir);
        AssertConverted(source, converted);
    }

    [Fact]
    public void ConvertShardedReadsBackLikeTheSingleFile()
    {
        string outDir = Path.Combine(_temp, "hf-sharded");
        const long shardBytes = 100_000;
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260KBin, outDir, shardBytes);

        Assert.False(File.Exists(Path.Combine(outDir, "model.safetensors")));
        var shards = Directory.GetFiles(outDir, "model-*-of-*.safetensors").Order().ToList();
        Assert.True(shards.Count > 1);
        for (int i = 0; i < shards.Count; i++)
            Assert.Equal($"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors", Path.GetFileName(shards[i]));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "model.safetensors.index.json")))!;
        // The whole llama2.c file but its 28-byte header and its two fp32 RoPE tables of [512, 4].
        Assert.Equal(1056540 - 28 - 2 * 512 * 4 * 4, index["metadata"]!["total_size"]!.GetValue<long>());
        foreach (var shard in shards)
        {
            using var file = SafetensorsFile.Open(shard);
            long bytes = file.Entries.Values.Sum(e => e.End - e.Begin);
            Assert.True(bytes <= shardBytes || file.Entries.Count == 1, $"{shard} holds {bytes} bytes");
            foreach (var name in file.Entries.Keys)
                Assert.Equal(Path.GetFileName(shard), index["weight_map"]![name]!.GetValue<string>());
        }

        using var source = Llama2cCheckpointReader.Read(SharedData.Stories260KBin);
        using var converted = HuggingFaceCheckpointReader.Read(outDir);
        AssertConverted(source, converted);
    }

    [Fact]
    public void ConvertRefusesANonEmptyDirectoryUnlessToldToOverwrite()
    {
        string outDir = Path.Combine(_temp, "hf");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "keep.txt"), "mine");

        var e = Assert.Throws<IOException>(() => HuggingFaceConverter.FromLlama2c(SharedData.Stories260K, outDir));
        Assert.Contains("not empty", e.Message);
        Assert.True(File.Exists(Path.Combine(outDir, "keep.txt")));

        HuggingFaceConverter.FromLlama2c(SharedData.Stories260K, outDir, overwrite: true);
        Assert.False(File.Exists(Path.Combine(outDir, "keep.txt")));
        Assert.True(File.Exists(Path.Combine(outDir, "config.json")));
        Assert.Equal([outDir], Directory.GetFileSystemEntries(_temp)); // no staging directory left behind
    }

    [Fact]
    public void ConvertFailureLeavesNoCheckpointBehind()
    {
        // The weights convert fine; copying the tokenizer, a dangling link, fails after they are written.
        string source = Path.Combine(_temp, "source");
        Directory.CreateDirectory(source);
        File.Copy(SharedData.Stories260KBin, Path.Combine(source, "stories260K.bin"));
        File.CreateSymbolicLink(Path.Combine(source, "tokenizer.model"), Path.Combine(_temp, "missing.model"));
        string outDir = Path.Combine(_temp, "hf");

        Assert.ThrowsAny<IOException>(() => HuggingFaceConverter.FromLlama2c(source, outDir));
        Assert.Equal([source], Directory.GetFileSystemEntries(_temp));
    }

    [Theory]
    [InlineData("hidden_size", 80, "so tensor model.embed_tokens.weight should have shape [512, 80], but it has shape [512, 64]")]
    [InlineData("intermediate_size", 180, "so tensor model.layers.0.mlp.gate_proj.weight should have shape [180, 64], but it has shape [172, 64]")]
    [InlineData("num_key_value_heads", 8, "so tensor model.layers.0.self_attn.k_proj.weight should have shape [64, 64], but it has shape [32, 64]")]
    [InlineData("num_hidden_layers", 6, "which needs tensor model.layers.5.input_layernorm.weight")]
    public void HuggingFaceConfigThatDisagreesWithTheTensorsIsRejected(string field, int value, string expected)
    {
        string outDir = ConvertStories();
        EditConfig(outDir, config => config[field] = value);

        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpointReader.Read(outDir));
        Assert.Contains($"config.json says", e.Message);
        Assert.Contains($"{field} {value}", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void HuggingFaceUntiedConfigWithoutLmHeadIsRejected()
    {
        string outDir = ConvertStories();
        EditConfig(outDir, config => config["tie_word_embeddings"] = false);
        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpointReader.Read(outDir));
        Assert.Contains("lm_head.weight", e.Message);
    }

    [Fact]
    public void HuggingFaceRopeScalingIsRefused()
    {
        string outDir = ConvertStories();
        EditConfig(outDir, config => config["rope_scaling"] = new JsonObject { ["type"] = "linear", ["factor"] = 2.0 });
        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpointReader.Read(outDir));
        Assert.Contains("rope_scaling", e.Message);
        Assert.Contains("not supported", e.Message);
    }

    [Fact]
    public void HuggingFaceBf16WeightsLoadExtraTensorsAreIgnoredFirstEosIsTaken()
    {
        string outDir = ConvertStories();
        string weights = Path.Combine(outDir, "model.safetensors");
        var tensors = new Dictionary<string, torch.Tensor>();
        using (var file = SafetensorsFile.Open(weights))
            foreach (var name in file.Entries.Keys) tensors[name] = file.Read(name);
        tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4);
        SafetensorsFile.Write(weights, tensors, SafetensorsDtype.BF16);
        foreach (var t in tensors.Values) t.Dispose();
        EditConfig(outDir, config => config["eos_token_id"] = new JsonArray(7, 9));

        using var checkpoint = HuggingFaceCheckpointReader.Read(outDir);
        Assert.Equal(7, checkpoint.Config.EosId);
        Assert.DoesNotContain(checkpoint.Tensors.Keys, name => name.Contains("inv_freq"));
    }

    // ---- locating checkpoints ----

    [Fact]
    public void LoaderAcceptsTheStoriesDirectoryAndItsFileAndFindsTheTokenizer()
    {
        using var fromDir = CheckpointLoader.Load(SharedData.Stories260K);
        using var fromFile = CheckpointLoader.Load(SharedData.Stories260KBin);
        Assert.Equal(fromFile.Config, fromDir.Config);
        Assert.Equal(SharedData.Tok512, CheckpointLoader.FindTokenizer(SharedData.Stories260K));
        Assert.Equal(SharedData.Tok512, CheckpointLoader.FindTokenizer(SharedData.Stories260KBin));
        Assert.Null(CheckpointLoader.FindTokenizer(_temp));
    }

    [Fact]
    public void LoaderMissingPathOrEmptyDirectorySaysWhatWasExpected()
    {
        var missing = Assert.Throws<FileNotFoundException>(() => CheckpointLoader.Load(Path.Combine(_temp, "nope")));
        Assert.Contains("does not exist", missing.Message);
        Assert.Contains("config.json", missing.Message);
        var empty = Assert.Throws<FileNotFoundException>(() => CheckpointLoader.Load(_temp));
        Assert.Contains("llama2.c .bin", empty.Message);
    }

    // ---- the q/k permutation, proven against RoPE itself ----

    /// <summary>
    /// Interleaved RoPE applied to the llama2.c projections must give, up to the converter's row permutation, what
    /// rotate-half RoPE gives on the converted projections; so attention scores are identical at every position.
    /// </summary>
    [Fact]
    public void PermutationMakesRotateHalfRopeMatchInterleavedRope()
    {
        string outDir = ConvertStories();
        using var source = Llama2cCheckpointReader.Read(SharedData.Stories260KBin);
        using var converted = HuggingFaceCheckpointReader.Read(outDir);
        int headDim = source.Config.HeadDim;
        int group = source.Config.Heads / source.Config.KvHeads;
        var random = new Random(3);
        var x = Enumerable.Range(0, source.Config.Dim).Select(_ => (float)random.NextDouble() * 2 - 1).ToArray();

        for (int layer = 0; layer < source.Config.Layers; layer++)
        {
            foreach (var (pos, otherPos) in new[] { (0, 0), (1, 0), (7, 3), (100, 250), (511, 17) })
            {
                var qInterleaved = RopeInterleaved(Project(source.Tensors[WeightNames.Query(layer)], x), pos, headDim);
                var qRotateHalf = RopeRotateHalf(Project(converted.Tensors[WeightNames.Query(layer)], x), pos, headDim);
                var kInterleaved = RopeInterleaved(Project(source.Tensors[WeightNames.Key(layer)], x), otherPos, headDim);
                var kRotateHalf = RopeRotateHalf(Project(converted.Tensors[WeightNames.Key(layer)], x), otherPos, headDim);

                for (int row = 0; row < qRotateHalf.Length; row++)
                    Assert.Equal(qInterleaved[InterleavedRow(row, headDim)], qRotateHalf[row], 1e-5);
                for (int row = 0; row < kRotateHalf.Length; row++)
                    Assert.Equal(kInterleaved[InterleavedRow(row, headDim)], kRotateHalf[row], 1e-5);
                for (int head = 0; head < source.Config.Heads; head++)
                    Assert.Equal(Dot(qInterleaved, kInterleaved, head, head / group, headDim), Dot(qRotateHalf, kRotateHalf, head, head / group, headDim), 1e-5);
            }
        }

        // Without the permutation the two conventions give different scores, so the equalities above are not vacuous.
        var qPlain = RopeRotateHalf(Project(source.Tensors[WeightNames.Query(0)], x), 7, headDim);
        var kPlain = RopeRotateHalf(Project(source.Tensors[WeightNames.Key(0)], x), 3, headDim);
        var qReference = RopeInterleaved(Project(source.Tensors[WeightNames.Query(0)], x), 7, headDim);
        var kReference = RopeInterleaved(Project(source.Tensors[WeightNames.Key(0)], x), 3, headDim);
        Assert.True(Math.Abs(Dot(qReference, kReference, 0, 0, headDim) - Dot(qPlain, kPlain, 0, 0, headDim)) > 1e-4);
    }

    // ---- helpers ----

    private static void AssertConverted(Checkpoint source, Checkpoint converted)
    {
        Assert.Equal(source.Config with { Rope = RopeStyle.RotateHalf }, converted.Config);
        Assert.Equal(source.Tensors.Keys.Order(), converted.Tensors.Keys.Order());
        int headDim = source.Config.HeadDim;
        foreach (var (name, original) in source.Tensors)
        {
            var actual = converted.Tensors[name];
            bool permuted = name.EndsWith("q_proj.weight") || name.EndsWith("k_proj.weight");
            if (!permuted)
            {
                Assert.True(original.bytes.SequenceEqual(actual.bytes), $"{name} is not bit-identical");
                continue;
            }
            for (long row = 0; row < actual.shape[0]; row++)
                Assert.Equal(Row(original, InterleavedRow((int)row, headDim)), Row(actual, row));
        }
    }

    /// <summary>
    /// The llama2.c row that Hugging Face row <paramref name="row"/> comes from: within a head, the rotate-half pair
    /// (i, i + headDim/2) is the interleaved pair (2i, 2i + 1).
    /// </summary>
    private static int InterleavedRow(int row, int headDim)
    {
        int head = row / headDim, within = row % headDim, half = headDim / 2;
        return head * headDim + 2 * (within % half) + within / half;
    }

    private static float[] Project(torch.Tensor weight, float[] x)
    {
        using var input = torch.tensor(x);
        using var output = weight.matmul(input);
        return output.data<float>().ToArray();
    }

    private static double Angle(int pos, int pair, int headDim) => pos * Math.Pow(10000.0, -2.0 * pair / headDim);

    private static double[] RopeInterleaved(float[] v, int pos, int headDim)
    {
        var result = new double[v.Length];
        for (int start = 0; start < v.Length; start += headDim)
            for (int i = 0; i < headDim / 2; i++)
                Rotate(v, result, start + 2 * i, start + 2 * i + 1, Angle(pos, i, headDim));
        return result;
    }

    private static double[] RopeRotateHalf(float[] v, int pos, int headDim)
    {
        var result = new double[v.Length];
        for (int start = 0; start < v.Length; start += headDim)
            for (int i = 0; i < headDim / 2; i++)
                Rotate(v, result, start + i, start + i + headDim / 2, Angle(pos, i, headDim));
        return result;
    }

    private static void Rotate(float[] v, double[] result, int a, int b, double angle)
    {
        result[a] = v[a] * Math.Cos(angle) - v[b] * Math.Sin(angle);
        result[b] = v[a] * Math.Sin(angle) + v[b] * Math.Cos(angle);
    }

    private static double Dot(double[] q, double[] k, int qHead, int kHead, int headDim)
    {
        double sum = 0;
        for (int i = 0; i < headDim; i++) sum += q[qHead * headDim + i] * k[kHead * headDim + i];
        return sum;
    }

    // TorchSharp's data<T>().ToArray() throws on a tensor with no elements.
    private static float[] Values(torch.Tensor t) => t.numel() == 0 ? [] : t.data<float>().ToArray();

    private static float[] Row(torch.Tensor t, long row)
    {
        using var r = t[row];
        return r.data<float>().ToArray();
    }

    private static float[] FloatsAt(string path, long floatOffset, int count)
    {
        using var stream = File.OpenRead(path);
        stream.Position = Llama2cHeaderBytes + 4 * floatOffset;
        var bytes = new byte[4 * count];
        stream.ReadExactly(bytes);
        return Enumerable.Range(0, count).Select(i => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i))).ToArray();
    }

    private string ConvertStories()
    {
        string outDir = Path.Combine(_temp, "hf");
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260K, outDir);
        return outDir;
    }

    private static void EditConfig(string dir, Action<JsonObject> edit)
    {
        string path = Path.Combine(dir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(config);
        File.WriteAllText(path, config.ToJsonString());
    }

    private string WriteTemp(string name, byte[] bytes)
    {
        string path = Path.Combine(_temp, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string WriteSafetensors(string name, string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        return WriteTemp(name, bytes);
    }
}
