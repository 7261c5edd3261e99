using Spa.Model.Generation;
using Spa.Model.Sampling;
using Tensor = TorchSharp.torch.Tensor;
using Spa.Testing;

namespace Spa.Model.Tests;

public class ModelTests
{
    private static LlamaModel Model => Stories260K.Model;

    [Fact]
    public void LogitsAfterBOSMatchTheFp64Reference() => AssertReferenceLogits(Model);

    [Fact]
    public void GreedyDecodingFromBOSReproducesLlama2c() => AssertReferenceGreedy(Model);

    [Theory]
    [InlineData(null)]
    [InlineData(300_000L)]
    public void TheModelConvertedToTheHuggingFaceLayoutGivesTheSameLogitsAndText(long? shardBytes)
    {
        var directory = Path.Combine(Path.GetTempPath(), "spa-hf-" + Guid.NewGuid().ToString("N"));
        try
        {
            Spa.Model.Checkpoints.HuggingFaceConverter.FromLlama2c(SharedData.Stories260K, directory, shardBytes);
            Assert.Equal(shardBytes is not null, File.Exists(Path.Combine(directory, "model.safetensors.index.json")));
            using var converted = LlamaModel.Load(directory, new ModelOptions());
            Assert.Equal(RopeStyle.RotateHalf, converted.Config.Rope);
            AssertReferenceLogits(converted);
            AssertReferenceGreedy(converted);
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Theory]
    [InlineData("bfloat16")]
    [InlineData("float16")]
    public void ReducedPrecisionStaysCloseToFp32(string dtype)
    {
        using var reduced = LlamaModel.Load(SharedData.Stories260KBin, new ModelOptions(DType: dtype));
        var prompt = new[] { 1, 403, 407 };
        using var cacheReduced = reduced.CreateCache(1);
        using var cacheFull = Model.CreateCache(1);
        using var low = reduced.Step(cacheReduced, [0], [prompt]);
        using var full = Model.Step(cacheFull, [0], [prompt]);
        var lowRow = low.data<float>().ToArray();
        var fullRow = full.data<float>().ToArray();
        Assert.Equal(Sampler.ArgMax(fullRow), Sampler.ArgMax(lowRow));
        Assert.True(FloatArrays.MaxAbsDifference(lowRow, fullRow) < 0.25f, $"{dtype}: max difference {FloatArrays.MaxAbsDifference(lowRow, fullRow)}");
    }

    private static void AssertReferenceLogits(LlamaModel model)
    {
        using var cache = model.CreateCache(1);
        using var logits = model.Step(cache, [0], [[model.Config.BosId]]);
        var row = logits.data<float>().ToArray();
        var (first8, top5) = Stories260K.ExpectedLogitsAfterBos();
        for (int i = 0; i < first8.Length; i++) Assert.True(Math.Abs(row[i] - first8[i]) <= 1e-4, $"logit {i}: {row[i]} vs {first8[i]}");
        foreach (var (id, expected) in top5) Assert.True(Math.Abs(row[id] - expected) <= 1e-4, $"logit {id}: {row[id]} vs {expected}");
        var order = Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).Take(5).ToArray();
        Assert.Equal(top5.Select(t => t.Id), order);
    }

    private static void AssertReferenceGreedy(LlamaModel model)
    {
        var tokens = new Generator(model).Decode([model.Config.BosId], 140, SamplingOptions.Greedy).Select(t => t.Id).ToList();
        Assert.Equal(140, tokens.Count);
        var tokenizer = Spa.Model.Tokenizers.TokenizerLoader.Load(SharedData.Tok512, model.Config.VocabSize);
        Assert.Equal(Stories260K.ExpectedGreedyText.TrimEnd('\n'), tokenizer.Decode([model.Config.BosId, .. tokens]).TrimEnd('\n'));
    }

    [Fact]
    public void CachedDecodingEqualsRecomputingTheWholeSequence()
    {
        var random = new Random(7);
        for (int trial = 0; trial < 4; trial++)
        {
            var sequence = RandomTokens(random, random.Next(5, 60));
            using var cache = Model.CreateCache(1);
            int prefill = random.Next(1, sequence.Count);
            var cached = new List<float[]>();
            using (var first = Model.Step(cache, [0], [sequence.Take(prefill).ToArray()])) cached.Add(first.data<float>().ToArray());
            for (int t = prefill; t < sequence.Count; t++)
                using (var step = Model.Step(cache, [0], [[sequence[t]]])) cached.Add(step.data<float>().ToArray());

            using var full = Model.Forward(Model.PadTokens([sequence], sequence.Count), [sequence.Count]);
            for (int t = prefill - 1, i = 0; t < sequence.Count; t++, i++)
            {
                var reference = full[0, t].data<float>().ToArray();
                Assert.True(FloatArrays.MaxAbsDifference(reference, cached[i]) <= 1e-4, $"trial {trial}, position {t}: {FloatArrays.MaxAbsDifference(reference, cached[i])}");
            }
        }
    }

    [Fact]
    public void ChunkedPrefillEqualsPrefillInOnePiece()
    {
        var sequence = RandomTokens(new Random(11), 40);
        using var whole = Model.CreateCache(1);
        using var wholeLogits = Model.Step(whole, [0], [sequence]);
        using var chunked = Model.CreateCache(1);
        Tensor? last = null;
        foreach (var chunk in sequence.Chunk(7))
        {
            last?.Dispose();
            last = Model.Step(chunked, [0], [chunk]);
        }
        Assert.True(FloatArrays.MaxAbsDifference(wholeLogits.data<float>().ToArray(), last!.data<float>().ToArray()) <= 1e-4);
        last.Dispose();
    }

    [Fact]
    public void ABatchOfSequencesOfDifferentLengthsDecodesAsEachAlone()
    {
        var random = new Random(3);
        var prompts = Enumerable.Range(0, 8).Select(i => (IReadOnlyList<int>)RandomTokens(random, 1 + 5 * i)).ToArray();
        var generator = new Generator(Model);
        var together = generator.DecodeBatchGreedy(prompts, 40);
        for (int i = 0; i < prompts.Length; i++)
        {
            var alone = generator.Decode(prompts[i], 40, SamplingOptions.Greedy).Select(t => t.Id).ToList();
            Assert.Equal(alone, together[i]);
        }

        // The same at the level of logits, with sequences in scattered slots of a larger cache.
        using var cache = Model.CreateCache(12);
        int[] slots = [11, 0, 5, 3, 8, 1, 9, 6];
        using var batched = Model.Step(cache, slots, prompts);
        for (int i = 0; i < prompts.Length; i++)
        {
            using var single = Model.CreateCache(1);
            using var logits = Model.Step(single, [0], [prompts[i]]);
            Assert.True(FloatArrays.MaxAbsDifference(logits.data<float>().ToArray(), batched[i].data<float>().ToArray()) <= 1e-4, $"sequence {i}");
        }
    }

    [Fact]
    public void ABatchSteppedInPartsOverTheCoresDecodesAsEachAlone()
    {
        // 20 sequences of different lengths in scattered slots: past RowsPerPart twice, so on two or more cores the
        // batch steps in parts, each holding slots that are not one run.
        const int rows = 20, steps = 12;
        Assert.True(rows >= 2 * BatchParts.RowsPerPart);
        var random = new Random(11);
        var prompts = Enumerable.Range(0, rows).Select(i => (IReadOnlyList<int>)RandomTokens(random, 1 + 3 * i)).ToArray();
        var slots = Enumerable.Range(0, 24).OrderBy(_ => random.Next()).Take(rows).ToArray();
        using var cache = Model.CreateCache(24);
        var together = new List<float[][]>();
        var inputs = prompts;
        long createdByDecodeSteps = 0;
        for (int step = 0; step < steps; step++)
        {
            var before = TensorCount.OnCountedThreads();
            using var logits = Model.Step(cache, slots, inputs);
            if (step > 0) createdByDecodeSteps += (TensorCount.OnCountedThreads() - before).Created;
            var rowsLogits = HostCopy.Rows(logits);
            together.Add(rowsLogits);
            inputs = rowsLogits.Select(row => (IReadOnlyList<int>)[Sampler.ArgMax(row)]).ToArray();
        }

        for (int i = 0; i < rows; i++)
        {
            using var alone = Model.CreateCache(1);
            IReadOnlyList<int> input = prompts[i];
            for (int step = 0; step < steps; step++)
            {
                using var logits = Model.Step(alone, [0], [input]);
                var row = logits.data<float>().ToArray();
                Assert.True(FloatArrays.MaxAbsDifference(row, together[step][i]) <= 1e-4, $"sequence {i}, step {step}: {FloatArrays.MaxAbsDifference(row, together[step][i])}");
                input = [Sampler.ArgMax(row)];
            }
        }

        // Each part runs a whole forward, so the parts show in the tensors the steps create: a decoding step of two
        // parts creates what two of one part create, and one more for joining their logits.
        using var small = Model.CreateCache(BatchParts.RowsPerPart);
        var smallSlots = Enumerable.Range(0, BatchParts.RowsPerPart).ToArray();
        using (Model.Step(small, smallSlots, prompts.Take(BatchParts.RowsPerPart).ToArray())) { }
        var beforeOnePart = TensorCount.OnCountedThreads();
        using (Model.Step(small, smallSlots, smallSlots.Select(_ => (IReadOnlyList<int>)[403]).ToArray())) { }
        long onePart = (TensorCount.OnCountedThreads() - beforeOnePart).Created;
        long parts = Math.Min(Environment.ProcessorCount, rows / BatchParts.RowsPerPart);
        Assert.Equal((parts == 1 ? onePart : parts * onePart + 1) * (steps - 1), createdByDecodeSteps);
    }

    [Fact]
    public void ABatchRefusedBeforeItStepsInPartsLeavesEverySequenceAsItWas()
    {
        const int rows = 16, capacity = 24;
        var random = new Random(13);
        using var cache = Model.CreateCache(rows, capacity);
        var slots = Enumerable.Range(0, rows).ToArray();
        using (Model.Step(cache, slots, slots.Select(i => (IReadOnlyList<int>)RandomTokens(random, 2 + i)).ToArray())) { }
        var lengths = slots.Select(cache.Length).ToArray();

        // The last row would outgrow the cache; every other row fits, and those in the first part come first.
        var next = slots.Select(i => (IReadOnlyList<int>)RandomTokens(random, i == rows - 1 ? capacity : 2)).ToArray();
        var error = Assert.Throws<ContextOverflowException>(() => Model.Step(cache, slots, next));
        Assert.Contains("context", error.Message);
        Assert.Equal(lengths, slots.Select(cache.Length).ToArray());
    }

    [Fact]
    public void BeamSearchOfWidthOneIsGreedy()
    {
        var generator = new Generator(Model);
        foreach (var prompt in SomePrompts())
        {
            var greedy = generator.Decode(prompt, 60, SamplingOptions.Greedy).Select(t => t.Id).ToList();
            var beam = new BeamSearch(generator).Run(prompt, 60, width: 1, lengthPenalty: 1.0);
            Assert.Equal(greedy, beam.Tokens);
        }
    }

    [Fact]
    public void BeamSearchOfWidthFourScoresAtLeastGreedy()
    {
        var generator = new Generator(Model);
        foreach (var prompt in SomePrompts())
        {
            var greedy = generator.Decode(prompt, 40, SamplingOptions.Greedy).ToList();
            var beam = new BeamSearch(generator).Run(prompt, 40, width: 4, lengthPenalty: 0.0);
            double greedyLogProbability = greedy.Sum(t => (double)t.LogProbability);
            Assert.True(beam.LogProbability >= greedyLogProbability - 1e-4, $"beam {beam.LogProbability} < greedy {greedyLogProbability}");
        }
    }

    [Fact]
    public void SamplingWithTheSameSeedGivesTheSameTokens()
    {
        var options = new SamplingOptions { Temperature = 1.0, TopP = 0.9, TopK = 40, Seed = 1234 };
        var generator = new Generator(Model);
        var first = generator.Decode([1, 403], 50, options).Select(t => t.Id).ToList();
        var second = generator.Decode([1, 403], 50, options).Select(t => t.Id).ToList();
        var other = generator.Decode([1, 403], 50, options with { Seed = 99 }).Select(t => t.Id).ToList();
        Assert.Equal(first, second);
        Assert.NotEqual(first, other);
    }

    [Fact]
    public void APromptThatFillsTheContextIsRefused()
    {
        var prompt = Enumerable.Repeat(403, Model.Config.MaxSeqLen).ToArray();
        var error = Assert.Throws<ContextOverflowException>(() => new Generator(Model).Decode(prompt, 1, SamplingOptions.Greedy).ToList());
        Assert.Contains("context", error.Message);
    }

    private static IEnumerable<IReadOnlyList<int>> SomePrompts()
    {
        var random = new Random(5);
        yield return [1];
        for (int i = 0; i < 3; i++) yield return RandomTokens(random, random.Next(2, 12));
    }

    private static List<int> RandomTokens(Random random, int count) =>
        [1, .. Enumerable.Range(0, count - 1).Select(_ => random.Next(3, Model.Config.VocabSize))];
}
