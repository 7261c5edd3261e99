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
        const int sequences = 20, length = 500;
        using var cache = Model.CreateCache(1);
        var liveAfterStep = new List<long>();
        for (int s = 0; s < sequences; s++)
        {
            cache.Clear(0);
            IReadOnlyList<int> input = [Model.Config.BosId];
            for (int t = 0; t < length; t++)
            {
                using (var logits = Model.Step(cache, [0], [input]))
                    input = [Sampler.ArgMax(logits.data<float>().ToArray())];
                if (s > 0) liveAfterStep.Add(TensorCount.OnThisThread().Live);
            }
        }
        Assert.Equal(liveAfterStep.Min(), liveAfterStep.Max());
    }
}
