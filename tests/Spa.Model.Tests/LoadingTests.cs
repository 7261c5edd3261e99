using System.Buffers.Binary;
using Spa.Model.Checkpoints;
using Spa.Model.Generation;
using Spa.Model.Sampling;
using Spa.Testing;
using static TorchSharp.torch;
using Generator = Spa.Model.Generation.Generator;

namespace Spa.Model.Tests;

/// <summary>
/// Loading reads each weight straight into the model's own tensor of the serving dtype (q, k and v into their rows of
/// the stacked projection), or maps the file and takes its tensors as they are stored; it computes the weights'
/// identity from the files beside it, and refuses non-finite values in every stored type; synthetic checkpoints are llama2.c files of real shapes with seeded random weights.
/// </summary>
public sealed class LoadingTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("spa-loading-tests-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private string Temp(string name) => Path.Combine(_temp, name);

    [Theory]
    [InlineData("float32", false)]
    [InlineData("float32", true)]
    [InlineData("bfloat16", false)]
    [InlineData("bfloat16", true)] // the file stores float32: read and rounded, though mapping was asked for
    [InlineData("float16", false)]
    public void EveryWeightLandsInItsPlaceConvertedToTheServingDtype(string dtype, bool mapWeights)
    {
        using var checkpoint = Stories260K.ReadCheckpoint();
        var w = checkpoint.Tensors;
        using var model = LlamaModel.Load(SharedData.Stories260KBin, new ModelOptions(DType: dtype, MapWeights: mapWeights));
        var type = model.DType;
        using var scope = NewDisposeScope();

        bool mapped = mapWeights && dtype == "float32";
        Assert.Equal(mapped, model.Mapped);
        Assert.Equal(mapped ? 3 : 1, model.Blocks[0].Attention.Qkv.Blocks.Count);
        Assert.Equal(mapped ? 2 : 1, model.Blocks[0].Mlp.GateUp.Blocks.Count);
        Assert.Equal(checkpoint.Tensors.Values.Sum(t => t.NumberOfElements) * model.Embedding.ElementSize, model.WeightBytes);

        AssertSame(w[WeightNames.Embedding].to(type), model.Embedding, WeightNames.Embedding);
        Assert.Same(model.Embedding, model.LmHead); // stories260K ties its output layer to the embedding
        AssertSame(w[WeightNames.FinalNorm].to(type), model.FinalNorm.Weight, WeightNames.FinalNorm);
        for (int l = 0; l < model.Config.Layers; l++)
        {
            var block = model.Blocks[l];
            AssertSame(cat([w[WeightNames.Query(l)], w[WeightNames.Key(l)], w[WeightNames.Value(l)]], 0).to(type), cat([.. block.Attention.Qkv.Blocks], 0), $"layer {l} qkv");
            AssertSame(w[WeightNames.Output(l)].to(type), block.Attention.OutputWeight, $"layer {l} output");
            AssertSame(cat([w[WeightNames.Gate(l)], w[WeightNames.Up(l)]], 0).to(type), cat([.. block.Mlp.GateUp.Blocks], 0), $"layer {l} gate and up");
            AssertSame(w[WeightNames.Down(l)].to(type), block.Mlp.DownWeight, $"layer {l} down");
            AssertSame(w[WeightNames.AttentionNorm(l)].to(type), block.AttentionNorm.Weight, $"layer {l} attention norm");
            AssertSame(w[WeightNames.MlpNorm(l)].to(type), block.MlpNorm.Weight, $"layer {l} mlp norm");
        }
        Assert.Equal(checkpoint.Tensors.Values.Sum(t => t.NumberOfElements), model.ParameterCount);
    }

    [Fact]
    public void Float32RoundsToBFloat16AsTorchRoundsTiesIncluded()
    {
        // Halfway cases round to the even neighbour: up from an odd one, down from an even one, either sign, subnormals too.
        uint[] ties = [0x3F80_8000, 0x3F81_8000, 0xBF80_8000, 0xBF81_8000, 0x0000_8000, 0x0001_8000, 0x7F7F_8000, 0x3F80_7FFF, 0x3F80_8001];
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        for (int i = 0; i < ties.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(28 + 4 * i), ties[i]);
        string path = Temp("ties.bin");
        File.WriteAllBytes(path, bytes);
        using var checkpoint = Llama2cCheckpointReader.Read(path);

        using var model = LlamaModel.Load(path, new ModelOptions(DType: "bfloat16"));

        using var scope = NewDisposeScope();
        AssertSame(checkpoint.Tensors[WeightNames.Embedding].to(ScalarType.BFloat16), model.Embedding, WeightNames.Embedding);
    }

    [Fact]
    public void TheIdentityIsTheOneEveryEarlierPluginRecordedWhereverTheWeightsComeFrom()
    {
        // The SHA-256 of the config line and every weight but q and k, as fp32, in WeightNames order, computed
        // independently of this code from stories260K.bin; plugins trained before this loader carry it.
        const string stories260K = "sha256:95069c28650f4401314185c57f12a6aac2ac48578937db78d8371c572235b380";

        using var fromFile = LlamaModel.Load(SharedData.Stories260KBin, new ModelOptions(DType: "bfloat16"));
        using var checkpoint = Stories260K.ReadCheckpoint();
        using var fromMemory = new LlamaModel(checkpoint, new ModelOptions());
        string converted = Temp("hf");
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260KBin, converted);
        using var fromConversion = LlamaModel.Load(converted, new ModelOptions());

        Assert.Equal(stories260K, fromFile.Identity);
        Assert.Equal(stories260K, fromMemory.Identity);
        Assert.Equal(stories260K, fromConversion.Identity);
    }

    [Fact]
    public void SixteenBitWeightsAreIdentifiedByTheirFloat32ValuesAndLoadedWithoutChange()
    {
        string dir = Temp("hf-bf16");
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260KBin, dir);
        RewriteWeights(dir, SafetensorsDtype.BF16);
        using var checkpoint = HuggingFaceCheckpointReader.Read(dir); // fp32, widened from the file's bf16

        using var model = LlamaModel.Load(dir, new ModelOptions(DType: "bfloat16"));

        Assert.Equal(WeightIdentity.Of(checkpoint), model.Identity);
        Assert.NotEqual(Stories260K.Model.Identity, model.Identity); // rounding to bf16 changed the weights
        using var scope = NewDisposeScope();
        AssertSame(checkpoint.Tensors[WeightNames.Embedding].to(ScalarType.BFloat16), model.Embedding, WeightNames.Embedding);
    }

    [Theory]
    [InlineData(SafetensorsDtype.BF16, (ushort)0x7FC0, false)] // NaN
    [InlineData(SafetensorsDtype.BF16, (ushort)0xFF80, false)] // -infinity
    [InlineData(SafetensorsDtype.F16, (ushort)0x7C00, false)]  // infinity
    [InlineData(SafetensorsDtype.F16, (ushort)0x7E00, false)]  // NaN
    [InlineData(SafetensorsDtype.BF16, (ushort)0x7FC0, true)]
    [InlineData(SafetensorsDtype.F16, (ushort)0x7C00, true)]
    public void ANonFiniteSixteenBitWeightIsRefusedNamingTheTensor(SafetensorsDtype dtype, ushort bits, bool mapped)
    {
        string dir = Temp($"hf-{dtype}-{bits}");
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260KBin, dir);
        RewriteWeights(dir, dtype);
        string weights = Path.Combine(dir, "model.safetensors");
        long offset;
        using (var file = SafetensorsFile.Open(weights))
            offset = file.DataStart + file.Entries[WeightNames.FinalNorm].End - 2; // its last element
        using (var stream = File.OpenWrite(weights))
        {
            stream.Position = offset;
            Span<byte> value = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(value, bits);
            stream.Write(value);
        }

        // Mapped: served in the stored dtype, so that the views are the weights.
        var options = mapped ? new ModelOptions(DType: DTypeOf(dtype), MapWeights: true) : new ModelOptions();
        var e = Assert.Throws<InvalidDataException>(() => LlamaModel.Load(dir, options));
        Assert.Contains("non-finite", e.Message);
        Assert.Contains(WeightNames.FinalNorm, e.Message);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(SafetensorsDtype.BF16)]
    [InlineData(SafetensorsDtype.F16)]
    public void AMappedModelDecodesTheTokensOfAReadOne(SafetensorsDtype? stored)
    {
        string path = SharedData.Stories260KBin, dtype = "float32";
        if (stored is { } sixteenBits)
        {
            path = Temp($"hf-{sixteenBits}");
            HuggingFaceConverter.FromLlama2c(SharedData.Stories260KBin, path);
            RewriteWeights(path, sixteenBits);
            dtype = DTypeOf(sixteenBits);
        }
        using var read = LlamaModel.Load(path, new ModelOptions(DType: dtype, MapWeights: false));
        using var mapped = LlamaModel.Load(path, new ModelOptions(DType: dtype, MapWeights: true));

        Assert.False(read.Mapped);
        Assert.True(mapped.Mapped);
        Assert.Equal(read.WeightBytes, mapped.WeightBytes);
        Assert.Equal(read.Identity, mapped.Identity);
        int[] prompt = [1, 403, 407, 261];
        Assert.Equal(Greedy(read, prompt, 48), Greedy(mapped, prompt, 48));
    }

    [Fact]
    public void ACheckpointReachedThroughSymbolicLinksIsMappedWhole()
    {
        // Hugging Face's cache: every file of a snapshot is a link to a blob named by its hash.
        string converted = Temp("converted"), blobs = Temp("blobs"), snapshot = Temp("snapshot");
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260KBin, converted);
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(snapshot);
        foreach (var file in Directory.GetFiles(converted))
        {
            string blob = Path.Combine(blobs, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file))));
            File.Move(file, blob);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), blob);
        }
        string linkedBin = Temp("linked.bin");
        File.CreateSymbolicLink(linkedBin, SharedData.Stories260KBin);

        using var original = LlamaModel.Load(SharedData.Stories260KBin, new ModelOptions(MapWeights: false));
        int[] prompt = [1, 403, 407, 261];
        foreach (var path in new[] { snapshot, linkedBin })
        {
            using var mapped = LlamaModel.Load(path, new ModelOptions(MapWeights: true));
            Assert.True(mapped.Mapped, path);
            Assert.Equal(new FileInfo(SharedData.Stories260KBin).Length, CheckpointLayout.LengthOf(linkedBin));
            Assert.Equal(Greedy(original, prompt, 32), Greedy(mapped, prompt, 32));
        }
    }

    [Fact]
    public void AWriteToAMappedWeightNeverReachesTheFile()
    {
        string path = Temp("mapped.bin");
        File.Copy(SharedData.Stories260KBin, path);
        byte[] before = File.ReadAllBytes(path);
        using var first = LlamaModel.Load(path, new ModelOptions(MapWeights: true));
        using (no_grad()) first.Embedding.fill_(7f);

        using var second = LlamaModel.Load(path, new ModelOptions(MapWeights: true));
        Assert.Equal(before, File.ReadAllBytes(path));
        using var checkpoint = Stories260K.ReadCheckpoint();
        using var scope = NewDisposeScope();
        AssertSame(checkpoint.Tensors[WeightNames.Embedding], second.Embedding, "the embedding mapped again");
        Assert.True(first.Embedding.eq(7f).all().item<bool>());
    }

    [Fact]
    public void LargeModelsOnTheCpuAreMappedUnlessTheOptionsSayOtherwise()
    {
        const long small = ModelOptions.SmallModelParameters - 1, large = ModelOptions.SmallModelParameters;
        Assert.False(new ModelOptions().MapsWeights(small));
        Assert.True(new ModelOptions().MapsWeights(large));
        Assert.True(new ModelOptions(MapWeights: true).MapsWeights(small));
        Assert.False(new ModelOptions(MapWeights: false).MapsWeights(large));
        Assert.False(new ModelOptions(Device: "cuda", MapWeights: true).MapsWeights(large)); // copied to the device anyway
    }

    [Fact]
    public void ATruncatedSafetensorsFileIsRefusedBeforeAnyWeightIsRead()
    {
        string dir = Temp("hf-truncated");
        HuggingFaceConverter.FromLlama2c(SharedData.Stories260KBin, dir);
        string weights = Path.Combine(dir, "model.safetensors");
        using (var stream = File.OpenWrite(weights)) stream.SetLength(stream.Length - 4);

        var e = Assert.Throws<InvalidDataException>(() => LlamaModel.Load(dir, new ModelOptions()));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void ASyntheticCheckpointIsALlama2cFileWithSeededRandomWeightsOfTheShape()
    {
        var config = new LlamaConfig(Dim: 64, HiddenDim: 172, Layers: 2, Heads: 8, KvHeads: 4, VocabSize: 300, MaxSeqLen: 32,
            TiedEmbedding: false, Rope: RopeStyle.Interleaved);
        string first = Temp("a.bin"), again = Temp("b.bin"), other = Temp("c.bin");
        SyntheticCheckpoint.Write(first, config, seed: 5);
        SyntheticCheckpoint.Write(again, config, seed: 5);
        SyntheticCheckpoint.Write(other, config, seed: 6);

        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(again));
        Assert.NotEqual(File.ReadAllBytes(first), File.ReadAllBytes(other));
        using var checkpoint = Llama2cCheckpointReader.Read(first); // the reader checks the size the header implies
        Assert.Equal(config, checkpoint.Config);
        foreach (var (name, tensor) in checkpoint.Tensors)
        {
            if (tensor.dim() == 1)
            {
                Assert.True(tensor.eq(1).all().item<bool>(), $"{name} is a norm's gain, 1 everywhere");
                continue;
            }
            Assert.InRange(tensor.std().item<float>(), 0.018, 0.022);
            Assert.InRange(tensor.mean().item<float>(), -0.002, 0.002);
        }

        // freq_cis_real[pos, i] = cos(pos * theta^(-2i / headDim)), where llama2.c's export puts it: after the final norm.
        long realTable = 28 + 4 * checkpoint.Tensors.Where(t => t.Key != WeightNames.LmHead).Sum(t => t.Value.NumberOfElements);
        var bytes = File.ReadAllBytes(first);
        float cosine = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(realTable + 4 * (3 * config.HeadDim / 2 + 1))));
        Assert.Equal((float)Math.Cos(3 * Math.Pow(10000, -2.0 / config.HeadDim)), cosine);

        using var model = LlamaModel.Load(first, new ModelOptions());
        using var cache = model.CreateCache(1);
        using var logits = model.Step(cache, [0], [[1, 2, 3]]);
        Assert.True(logits.isfinite().all().item<bool>());
    }

    [Fact]
    public void WeightsReadIntoMemoryLieInHugePagesAndMappedOnesInTheFilesPages()
    {
        // Embedding and LM head of 41 MB each: above glibc's largest mmap threshold (32 MiB), so they are always new
        // memory, as the weights of real models are; smaller blocks may reuse memory already touched in small pages.
        var config = new LlamaConfig(Dim: 256, HiddenDim: 688, Layers: 1, Heads: 8, KvHeads: 4, VocabSize: 40_000, MaxSeqLen: 32,
            TiedEmbedding: false, Rope: RopeStyle.Interleaved);
        string file = Temp("large-vocabulary.bin");
        SyntheticCheckpoint.Write(file, config, seed: 3);
        string mode = TransparentHugePages.Mode;

        using var read = LlamaModel.Load(file, new ModelOptions(MapWeights: false));
        using var unadvised = LlamaModel.Load(file, new ModelOptions(MapWeights: false, HugePages: false));
        using var mapped = LlamaModel.Load(file, new ModelOptions(MapWeights: true));

        Assert.Equal((false, false, true), (read.Mapped, unadvised.Mapped, mapped.Mapped));
        Assert.Equal((true, false), (read.AdvisesHugePages, unadvised.AdvisesHugePages));
        long WholeHugePages(Tensor t) => (t.NumberOfElements * t.ElementSize / HugePages.Size - 1) * HugePages.Size; // however it is aligned
        long atLeast = WholeHugePages(read.Embedding) + WholeHugePages(read.LmHead);
        if (mode == "never") Assert.Equal(0, HugePages.BackedBytes(read.Weights));
        else Assert.InRange(HugePages.BackedBytes(read.Weights), atLeast, long.MaxValue);
        if (mode != "always") Assert.Equal(0, HugePages.BackedBytes(unadvised.Weights)); // "always" needs no advice
        Assert.Equal(0, HugePages.BackedBytes(mapped.Weights)); // the page cache's pages, not anonymous memory
        int[] prompt = [1, 2, 3];
        Assert.Equal(Greedy(mapped, prompt, 8), Greedy(read, prompt, 8));
        Assert.Equal(Greedy(unadvised, prompt, 8), Greedy(read, prompt, 8));
    }

    [Fact]
    public void SyntheticShapesAreThePublishedOnesAndAnUnknownNameListsTheKnown()
    {
        var llama = SyntheticCheckpoint.Shape("llama-7b", 2);
        Assert.Equal((4096, 11008, 2, 32, 32, 32000, false), (llama.Dim, llama.HiddenDim, llama.Layers, llama.Heads, llama.KvHeads, llama.VocabSize, llama.TiedEmbedding));
        var e = Assert.Throws<ArgumentException>(() => SyntheticCheckpoint.Shape("llama-9b", 2));
        Assert.Contains("llama-7b", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticCheckpoint.Shape("llama-7b", 0));
    }

    /// <summary>Rewrites a converted checkpoint's weights in <paramref name="dtype"/>.</summary>
    private static void RewriteWeights(string dir, SafetensorsDtype dtype)
    {
        string weights = Path.Combine(dir, "model.safetensors");
        var tensors = new Dictionary<string, Tensor>();
        using (var file = SafetensorsFile.Open(weights))
            foreach (var name in file.Entries.Keys) tensors[name] = file.Read(name);
        SafetensorsFile.Write(weights, tensors, dtype);
        foreach (var t in tensors.Values) t.Dispose();
    }

    private static string DTypeOf(SafetensorsDtype sixteenBits) => sixteenBits == SafetensorsDtype.BF16 ? "bfloat16" : "float16";

    private static List<int> Greedy(LlamaModel model, int[] prompt, int tokens) =>
        new Generator(model).Decode(prompt, tokens, SamplingOptions.Greedy).Select(t => t.Id).ToList();

    private static void AssertSame(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.True(expected.equal(actual).all().item<bool>(), $"{what} differs from the checkpoint");
    }
}
