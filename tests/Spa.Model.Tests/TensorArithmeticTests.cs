using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Tests;

/// <summary>The cheaper forms of the per-token arithmetic give the same values, bit for bit, as the forms they replace.</summary>
public class TensorArithmeticTests
{
    [Theory]
    [InlineData(64, ScalarType.Float32)]
    [InlineData(100, ScalarType.Float32)]
    [InlineData(4096, ScalarType.Float32)]
    [InlineData(288, ScalarType.BFloat16)]
    public void RmsNormIsBitForBitTheMeanOfSquaresPlusEps(int width, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(seed: (ulong)width);
        var gain = randn([width], generator: generator).to(dtype);
        var norm = new RmsNorm(gain, 1e-5);
        using var eps = 1e-5.ToScalar();
        for (int trial = 0; trial < 20; trial++)
        {
            var x = (randn([3, 5, width], generator: generator) * (0.05 + trial)).to(dtype);
            var x32 = x.to(ScalarType.Float32);
            var expected = (x32 * x32.square().mean([-1L], keepdim: true).add(eps).rsqrt()).to(dtype) * gain;
            Assert.False(norm.Forward(x).ne(expected).any().item<bool>(), $"width {width}, {dtype}, trial {trial}");
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void RmsNormLeavesNothingAliveButItsResult(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var norm = new RmsNorm(ones(64).to(dtype), 1e-5);
        var x = randn(2, 3, 64).to(dtype);
        var before = TensorCount.OnThisThread();
        using (norm.Forward(x))
            Assert.Equal(1, (TensorCount.OnThisThread() - before).Live);
        Assert.Equal(0, (TensorCount.OnThisThread() - before).Live);
    }

    [Fact]
    public void HostCopyGivesTheValuesOfViewsAndOfOtherTypes()
    {
        using var scope = NewDisposeScope();
        var values = arange(0, 60, dtype: ScalarType.Float32).view(3, 4, 5);
        var cases = new (string What, Tensor Tensor)[]
        {
            ("contiguous", values),
            ("a view that starts inside its storage", values.narrow(0, 1, 2)),
            ("a transposed view", values.transpose(1, 2)),
            ("bfloat16", values.to(ScalarType.BFloat16)),
        };
        foreach (var (what, tensor) in cases)
        {
            var expected = tensor.to(ScalarType.Float32).contiguous().data<float>().ToArray();
            Assert.True(HostCopy.Floats(tensor).SequenceEqual(expected), what);
            var rows = HostCopy.Rows(tensor);
            Assert.Equal(tensor.shape[0], rows.Length);
            Assert.True(rows.SelectMany(row => row).SequenceEqual(expected), what + ", by rows");
            Assert.All(rows, row => Assert.Equal(expected.Length / rows.Length, row.Length));
        }
        Assert.Empty(HostCopy.Rows(zeros(0, 5)));
    }

    [Fact]
    public void HeldConstantsFirstAskedForInInferenceModeStillServeABackwardPass()
    {
        using var scope = NewDisposeScope();
        Tensor divisor;
        using (inference_mode()) divisor = Held.Float(7.25f, CPU);
        var x = ones(4, requires_grad: true);
        x.div(divisor).sum().backward();
        Assert.Equal(Enumerable.Repeat(1 / 7.25f, 4), x.grad!.data<float>().ToArray());
    }

    [Theory]
    [InlineData(RopeStyle.Interleaved, ScalarType.Float32)]
    [InlineData(RopeStyle.RotateHalf, ScalarType.Float32)]
    [InlineData(RopeStyle.Interleaved, ScalarType.BFloat16)]
    public void RotationsReadFromTheTableAreTheOnesBuiltForTheirPositions(RopeStyle style, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var small = new LlamaConfig(Dim: 64, HiddenDim: 128, Layers: 1, Heads: 8, KvHeads: 4, VocabSize: 32, MaxSeqLen: 512, TiedEmbedding: true, Rope: style);
        // The same heads with a context long enough that its table would pass RotaryEmbedding.TableBytes: built per forward.
        var large = small with { MaxSeqLen = (int)(RotaryEmbedding.TableBytes / (8 * 8 * 2)) + 1 };
        using var tabled = new RotaryEmbedding(small, CPU, dtype);
        using var built = new RotaryEmbedding(large, CPU, dtype);
        Assert.True(tabled.HoldsTable);
        Assert.False(built.HoldsTable);
        var positions = tensor(new long[] { 0, 1, 7, 8, 100, 257, 511, 300, 299, 2, 3, 4 }, [3, 4]);
        var fromTable = tabled.At(positions);
        Assert.Equal([3L, 4, 8, 8], fromTable.shape);
        Assert.False(fromTable.ne(built.At(positions)).any().item<bool>());
    }
}
