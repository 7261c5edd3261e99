using Spa.Grains.Abstractions;
using Spa.Grains.Shards;
using Spa.Model;
using Spa.Model.Sampling;
using Spa.Testing;

namespace Spa.Grains.Tests;

/// <summary>A shard's forward over a group large enough to step in parts, against each session's steps alone.</summary>
public sealed class ShardForwardTests
{
    private const int Rows = 20, Split = 3, PromptLength = 6, Steps = 5;

    [Fact]
    public Task AGroupSteppedInPartsGivesEverySessionWhatItGetsAlone() => TorchWorker.Shared.Run(() => Reference.WithModel(model =>
    {
        Assert.True(Rows >= 2 * BatchParts.RowsPerPart);
        var random = new Random(17);
        var prompts = Enumerable.Range(0, Rows).Select(_ => Enumerable.Range(0, PromptLength).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray()).ToArray();
        // Scattered slots, so that neither part's slots are one run; every second session reads taps (as a session
        // whose side network runs on its device does), so that both parts carry sessions with and without them.
        var slots = Enumerable.Range(0, 24).OrderBy(_ => random.Next()).Take(Rows).ToArray();
        var wantTaps = Enumerable.Range(0, Rows).Select(i => i % 2 == 0).ToArray();

        var together = Decode(model, 24, slots, prompts, wantTaps);
        for (int i = 0; i < Rows; i++)
        {
            var alone = Decode(model, 1, [0], [prompts[i]], [wantTaps[i]]);
            for (int step = 0; step < Steps; step++)
            {
                Assert.True(FloatArrays.MaxAbsDifference(alone.Hidden[step][0], together.Hidden[step][i]) <= 1e-4, $"session {i}, step {step}: the first shard's activations");
                Assert.True(FloatArrays.MaxAbsDifference(alone.Logits[step][0], together.Logits[step][i]) <= 1e-4, $"session {i}, step {step}: the logits");
                var (taps, normed) = together.Taps[step][i];
                if (!wantTaps[i])
                {
                    Assert.Null(taps);
                    continue;
                }
                Assert.True(FloatArrays.MaxAbsDifference(alone.Taps[step][0].Taps!, taps!) <= 1e-4, $"session {i}, step {step}: the taps");
                Assert.True(FloatArrays.MaxAbsDifference(alone.Taps[step][0].Normed!, normed!) <= 1e-4, $"session {i}, step {step}: the final norm's output");
            }
        }

        // Each part runs a whole forward, so the parts show in the tensors a step creates: a decoding step of the group
        // creates what a step of one part's rows creates, once per part.
        int parts = BatchParts.For(model.Device, Rows);
        var onePart = Decode(model, BatchParts.RowsPerPart, [.. Enumerable.Range(0, BatchParts.RowsPerPart)], prompts[..BatchParts.RowsPerPart], wantTaps[..BatchParts.RowsPerPart]);
        Assert.Equal(parts * onePart.CreatedPerDecodingStep, together.CreatedPerDecodingStep);
        return true;
    }));

    [Fact]
    public Task AGroupThatWouldOutgrowItsSlotsIsRefusedBeforeAnyPartSteps() => TorchWorker.Shared.Run(() => Reference.WithModel(model =>
    {
        const int capacity = 12;
        using var cache = new KvCache(model.Config, Rows, capacity, model.Device, model.DType, 0, Split);
        var forward = new ShardForward(model, cache, 0, Split, first: true, last: false, grains: null!);
        var slots = Enumerable.Range(0, Rows).ToArray();
        forward.Run([.. slots.Select(s => Step(s, 0, [1, 2, 3, 4, 5, 6]))]);
        // Every session but the last has room for 6 more positions; the last has been given 3 more already.
        forward.Run([Step(Rows - 1, 6, [7, 8, 9])]);
        var lengths = slots.Select(cache.Length).ToArray();

        var group = slots.Select(s => Step(s, cache.Length(s), [10, 11, 12, 13, 14, 15])).ToArray();
        Assert.Throws<ContextOverflowException>(() => forward.Run(group));
        Assert.Equal(lengths, slots.Select(cache.Length).ToArray());
        return true;
    }));

    /// <summary>Per step and session: the first shard's activations, the logits, and the taps and final norm's output of both shards.</summary>
    private sealed record Decoded(List<float[][]> Hidden, List<float[][]> Logits, List<(float[]? Taps, float[]? Normed)[]> Taps, long CreatedPerDecodingStep);

    /// <summary>
    /// The sessions in <paramref name="slots"/> prefill their prompts and decode greedily, every step one group over a
    /// first shard of layers [0, Split) and a last one of the rest.
    /// </summary>
    private static Decoded Decode(LlamaModel model, int cacheSlots, int[] slots, int[][] prompts, bool[] wantTaps)
    {
        using var firstCache = new KvCache(model.Config, cacheSlots, model.Config.MaxSeqLen, model.Device, model.DType, 0, Split);
        using var lastCache = new KvCache(model.Config, cacheSlots, model.Config.MaxSeqLen, model.Device, model.DType, Split);
        var first = new ShardForward(model, firstCache, 0, Split, first: true, last: false, grains: null!);
        var last = new ShardForward(model, lastCache, Split, model.Config.Layers, first: false, last: true, grains: null!);
        var hidden = new List<float[][]>();
        var logits = new List<float[][]>();
        var taps = new List<(float[]?, float[]?)[]>();
        long created = 0;
        var inputs = prompts;
        int position = 0;
        for (int step = 0; step < Steps; step++)
        {
            var before = TensorCount.OnCountedThreads();
            var firstResults = first.Run([.. slots.Select((slot, b) => Step(slot, position, inputs[b], wantTaps[b]))]);
            var lastResults = last.Run([.. slots.Select((slot, b) => Step(slot, position, inputs[b], wantTaps[b], firstResults[b].Hidden))]);
            if (step > 0) created += (TensorCount.OnCountedThreads() - before).Created;
            hidden.Add([.. firstResults.Select(r => r.Hidden!.Data)]);
            logits.Add([.. lastResults.Select(r => r.Logits!)]);
            taps.Add([.. firstResults.Zip(lastResults, (f, l) => (f.Taps is null ? null : (float[]?)[.. f.Taps.Data, .. l.Taps!.Data], l.Normed))]);
            position += inputs[0].Length;
            inputs = [.. lastResults.Select(r => new[] { Sampler.ArgMax(r.Logits!) })];
        }
        return new Decoded(hidden, logits, taps, created / (Steps - 1));
    }

    /// <summary>A session's step of <paramref name="tokens"/> at <paramref name="position"/>: the tokens for a first shard, else the activations before it.</summary>
    private static SlottedStep Step(int slot, int position, int[] tokens, bool wantTaps = false, Activations? hidden = null) =>
        new(new ShardStepRequest($"session-{slot}", position, position + tokens.Length, hidden is null ? tokens : null, hidden, wantTaps), slot, tokens.Length);
}
