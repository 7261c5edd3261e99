using Spa.Model.Sampling;

namespace Spa.Model.Tests;

public class TensorLifetimeTests
{
    private static LlamaModel Model => Stories260K.Model;

    [Fact]
    public void DecodingTenThousandTokensLeavesNoTensorBehind()
    {
        // 20 sequences of 500 tokens, each filling most of the 512-token context: 10,000 decoding steps. The first
        // sequence warms up; after that the live tensors on this thread must be the same after every step.
        AssertNoTensorLeftAlive(rows: 1, sequences: 20, length: 500);
    }

    [Fact]
    public void ABatchSteppedInPartsLeavesNoTensorBehindOnAnyThread()
    {
        // 16 rows step in parts on two or more cores: a part's tensors are created on whichever thread runs it and
        // its logits freed on the caller's, so the live count is summed over every thread that ran a part.
        AssertNoTensorLeftAlive(rows: 2 * BatchParts.RowsPerPart, sequences: 4, length: 500);
    }

    private static void AssertNoTensorLeftAlive(int rows, int sequences, int length)
    {
        using var cache = Model.CreateCache(rows);
        var slots = Enumerable.Range(0, rows).ToArray();
        var liveAfterStep = new List<long>();
        for (int s = 0; s < sequences; s++)
        {
            foreach (int slot in slots) cache.Clear(slot);
            IReadOnlyList<IReadOnlyList<int>> inputs = slots.Select(_ => (IReadOnlyList<int>)[Model.Config.BosId]).ToArray();
            for (int t = 0; t < length; t++)
            {
                using (var logits = Model.Step(cache, slots, inputs))
                    inputs = HostCopy.Rows(logits).Select(row => (IReadOnlyList<int>)[Sampler.ArgMax(row)]).ToArray();
                if (s > 0) liveAfterStep.Add(TensorCount.OnCountedThreads().Live);
            }
        }
        Assert.Equal(liveAfterStep.Min(), liveAfterStep.Max());
    }
}
