using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Tests;

/// <summary>
/// The host attention kernel that serves float32 decoding on the CPU gives what libtorch's attention gives, over a
/// KV cache it fills itself, for heads of one and of several chunks of 8 floats, shared and unshared key heads,
/// scattered slots, padded prefills and decoding steps.
/// </summary>
public class CpuAttentionTests
{
    /// <summary>The kernel needs AVX2 with FMA; on a CPU without them libtorch's attention serves, and these tests check that.</summary>
    private static readonly bool KernelHardware = Avx2.IsSupported && Fma.IsSupported;

    [Theory]
    [InlineData(64, 8, 4)]   // stories260K's heads: 8 dimensions, two query heads to a key head
    [InlineData(64, 4, 4)]   // 16 dimensions, no sharing
    [InlineData(128, 4, 1)]  // 32 dimensions, four query heads to the one key head
    [InlineData(256, 2, 2)]  // 128 dimensions, as LLaMA-7B's heads
    public void TheKernelGivesLibTorchsAttention(int dim, int heads, int kvHeads)
    {
        set_num_threads(1);
        using var scope = NewDisposeScope();
        var config = new LlamaConfig(Dim: dim, HiddenDim: 2 * dim, Layers: 1, Heads: heads, KvHeads: kvHeads, VocabSize: 32, MaxSeqLen: 64,
            TiedEmbedding: true, Rope: RopeStyle.Interleaved);
        var generator = new TorchSharp.torch.Generator(seed: (ulong)(dim * heads + kvHeads));
        int headDim = dim / heads;
        // Weights large enough that each query's softmax is peaked: a key or a value out of place shows.
        var qkvWeight = randn([(heads + 2 * kvHeads) * headDim, dim], generator: generator) * (2.0 / Math.Sqrt(dim));
        var outputWeight = randn([dim, dim], generator: generator) / Math.Sqrt(dim);
        using var rope = new RotaryEmbedding(config, CPU, ScalarType.Float32);
        var attention = new Attention(config, 0, new StackedProjection(qkvWeight), outputWeight, rope);

        using var onHost = new KvCache(config, slots: 6, capacity: 64, CPU, ScalarType.Float32);
        using var inLibTorch = new KvCache(config, slots: 6, capacity: 64, CPU, ScalarType.Float32);
        int[] slots = [4, 0, 2];
        // A padded prefill of 1, 9 and 17 tokens, then decoding steps, then a second, shorter padded chunk.
        var steps = new List<int[]> { new[] { 1, 9, 17 } };
        for (int s = 0; s < 12; s++) steps.Add([1, 1, 1]);
        steps.Add([3, 1, 6]);
        foreach (var counts in steps)
        {
            var x = randn([slots.Length, counts.Max(), dim], generator: generator);
            Tensor expected, actual;
            using (enable_grad())
            using (var batch = AttentionBatch.ForCache(config, rope, inLibTorch, slots, counts, CPU))
            {
                Assert.False(batch.AttendsOnCpu);
                expected = attention.Forward(x, batch);
                batch.Commit();
            }
            using (no_grad())
            using (var batch = AttentionBatch.ForCache(config, rope, onHost, slots, counts, CPU))
            {
                Assert.Equal(KernelHardware, batch.AttendsOnCpu);
                actual = attention.Forward(x, batch);
                batch.Commit();
            }
            for (int b = 0; b < slots.Length; b++)
            {
                // Only real tokens: a padding position's output is never read.
                var real = expected[b].narrow(0, 0, counts[b]);
                double difference = (actual[b].narrow(0, 0, counts[b]) - real).abs().max().item<float>();
                double size = real.abs().max().item<float>();
                Assert.True(difference <= 1e-5 * Math.Max(1, size), $"counts [{string.Join(", ", counts)}], row {b}: {difference} against values up to {size}");
            }
        }
        Assert.Equal([22, 0, 35, 0, 16, 0], Enumerable.Range(0, 6).Select(onHost.Length));
    }

    [Fact]
    public unsafe void ABatchSplitOverTheCoresGivesEveryRowWhatItGetsAlone()
    {
        if (!KernelHardware) return; // the kernel cannot run; libtorch serves every forward, as the test below checks
        using var scope = NewDisposeScope();
        const int rows = 24, heads = 8, kvHeads = 4, headDim = 8, capacity = 256;
        var generator = new TorchSharp.torch.Generator(seed: 17);
        var together = (Keys: zeros([rows, kvHeads, capacity, headDim]), Values: zeros([rows, kvHeads, capacity, headDim]));
        var alone = (Keys: zeros([rows, kvHeads, capacity, headDim]), Values: zeros([rows, kvHeads, capacity, headDim]));
        int[] slots = [.. Enumerable.Range(0, rows).Select(r => r * 7 % rows)];
        var past = new int[rows];

        // A prefill of 150-196 tokens a row, then a decoding step: both forwards are past the size that splits.
        foreach (var counts in new[] { Enumerable.Range(0, rows).Select(r => 150 + 2 * r).ToArray(), Enumerable.Repeat(1, rows).ToArray() })
        {
            int newLength = counts.Max();
            var layout = new CpuAttention.Layout(heads, kvHeads, headDim, capacity, slots, [.. past], counts, newLength,
                Enumerable.Range(0, rows).Max(r => past[r] + counts[r]));
            long pairs = Enumerable.Range(0, rows).Sum(r => Enumerable.Range(0, newLength).Sum(t => (long)past[r] + Math.Min(t, counts[r] - 1) + 1)) * heads;
            Assert.True(pairs >= CpuAttention.PairsWorthSplitting, $"{pairs} query-key pairs do not split");

            var rotated = randn([rows, newLength, heads + kvHeads, headDim], generator: generator);
            var projected = randn([rows, newLength, heads + 2 * kvHeads, headDim], generator: generator);
            var batched = zeros([rows, newLength, heads * headDim]);
            var single = zeros([rows, newLength, heads * headDim]);
            fixed (byte* q = rotated.bytes, v = projected.bytes, keys = together.Keys.bytes, values = together.Values.bytes, output = batched.bytes)
                CpuAttention.Attend(layout, (float*)q, (float*)v, (float*)keys, (float*)values, (float*)output);
            for (int r = 0; r < rows; r++)
            {
                var row = new CpuAttention.Layout(heads, kvHeads, headDim, capacity, [slots[r]], [past[r]], [counts[r]], newLength, past[r] + counts[r]);
                fixed (byte* q = rotated[r].bytes, v = projected[r].bytes, keys = alone.Keys.bytes, values = alone.Values.bytes, output = single[r].bytes)
                    CpuAttention.Attend(row, (float*)q, (float*)v, (float*)keys, (float*)values, (float*)output);
                past[r] += counts[r];
            }
            Assert.True(single.abs().sum().item<float>() > 0, "nothing was attended");
            Assert.True(batched.equal(single).all().item<bool>(), "a row of the split batch differs from the same row attended alone");
            Assert.True(together.Keys.equal(alone.Keys).all().item<bool>() && together.Values.equal(alone.Values).all().item<bool>(), "the caches differ");
        }
    }

    [Fact]
    public void TheSoftmaxExponentialIsWithinTwoUnitsInTheLastPlace()
    {
        if (!KernelHardware) return; // the kernel cannot run; libtorch serves every forward, as the test below checks
        var random = new Random(5);
        var inputs = Enumerable.Range(0, 80_000).Select(i => i < 8 ? -i * 12.25f : -87.3f * random.NextSingle()).ToArray();
        for (int i = 0; i < inputs.Length; i += 8)
        {
            var exp = CpuAttention.ExpOfNonPositive(Vector256.Create(inputs, i));
            for (int lane = 0; lane < 8; lane++)
            {
                double exact = Math.Exp(inputs[i + lane]);
                double ulp = MathF.BitIncrement((float)exact) - (float)exact;
                Assert.True(Math.Abs(exp[lane] - exact) <= 2 * ulp, $"e^{inputs[i + lane]}: {exp[lane]} against {exact}");
            }
        }
        var belowNormal = CpuAttention.ExpOfNonPositive(Vector256.Create(-88f, -100f, -1e4f, float.MinValue, -87.4f, -90f, -200f, -1e30f));
        Assert.All(Enumerable.Range(0, 8), lane => Assert.InRange(belowNormal[lane], 0f, 1.2e-38f));
    }

    [Fact]
    public void TheKernelServesOnlyFloat32OnTheCpuOnOneThreadWithoutABackwardPass()
    {
        set_num_threads(1);
        var config = new LlamaConfig(Dim: 64, HiddenDim: 128, Layers: 1, Heads: 8, KvHeads: 4, VocabSize: 32, MaxSeqLen: 16,
            TiedEmbedding: true, Rope: RopeStyle.Interleaved);
        using var rope = new RotaryEmbedding(config, CPU, ScalarType.Float32);
        using var float32 = new KvCache(config, 1, 16, CPU, ScalarType.Float32);
        using var bfloat16 = new KvCache(config, 1, 16, CPU, ScalarType.BFloat16);
        bool Serves(KvCache cache)
        {
            using var batch = AttentionBatch.ForCache(config, rope, cache, [0], [1], CPU);
            return batch.AttendsOnCpu;
        }
        using (inference_mode())
        {
            Assert.Equal(KernelHardware, Serves(float32));
            Assert.False(Serves(bfloat16));
            using var causal = AttentionBatch.Causal(config, rope, [3], 3, CPU);
            Assert.False(causal.AttendsOnCpu);
        }
        using (enable_grad()) Assert.False(Serves(float32));
        try
        {
            set_num_threads(2);
            using (no_grad()) Assert.False(Serves(float32));
        }
        finally
        {
            set_num_threads(1);
        }
    }
}
