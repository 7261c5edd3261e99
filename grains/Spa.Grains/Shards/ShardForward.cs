using Spa.Grains.Abstractions;
using Spa.Model;
using static TorchSharp.torch;

namespace Spa.Grains.Shards;

/// <summary>
/// The model runner of a shard: layers [from, to) of the base model over a group of steps in the shard's KV cache, on
/// the torch worker. The first shard embeds the tokens, the others read the previous shard's activations; the last
/// shard applies the final norm and the LM head. Sessions whose plugin sits inside the base reach their devices through
/// a <see cref="RemoteLayerHook"/>.
/// </summary>
internal sealed class ShardForward(LlamaModel model, KvCache cache, int from, int to, bool first, bool last, IGrainFactory grains)
{
    /// <summary>
    /// Runs on the torch worker: one forward over the slots of a group of steps with the same new-position count. A
    /// large group without devices' plugins steps in <see cref="BatchParts"/>, as the engine's batches do, once the
    /// whole group is known to fit its slots, so that a refused group leaves every slot as it was.
    /// </summary>
    public ShardStepResult[] Run(SlottedStep[] group)
    {
        if (!TorchWorker.OnWorkerThread) throw new InvalidOperationException("tensor work must run on the torch worker, not on the Orleans scheduler");
        foreach (var step in group)
            if (step.Request.StartPosition == 0) cache.Clear(step.Slot);
        int parts = group[0].Request.Edge is null ? BatchParts.For(model.Device, group.Length) : 1;
        if (parts == 1) return RunPart(group, oneCore: false);

        AttentionBatch.CheckAppend(cache, group.Select(p => p.Slot).ToArray(), group.Select(p => p.Count).ToArray());
        var results = new ShardStepResult[parts][];
        BatchParts.Run(group.Length, parts, (part, from, to) => results[part] = RunPart(group[from..to], oneCore: true));
        return [.. results.SelectMany(r => r)];
    }

    private ShardStepResult[] RunPart(SlottedStep[] group, bool oneCore)
    {
        // As the engine steps: inference mode unless a device's plugin inside the base takes part, as the engine's hooks do.
        using var mode = group[0].Request.Edge is null ? inference_mode() : no_grad();
        using var scope = NewDisposeScope();
        int dim = model.Config.Dim, count = group[0].Count, rows = group.Length;
        var slots = group.Select(p => p.Slot).ToArray();
        using var batch = AttentionBatch.ForCache(model.Config, model.Rope, cache, slots, Enumerable.Repeat(count, rows).ToArray(), model.Device, oneCore);
        bool wantTaps = group.Any(p => p.Request.WantTaps);
        var layerTaps = wantTaps ? new List<Tensor>() : null;
        Tensor h;
        if (first)
        {
            h = model.EmbedPadded(group.Select(p => (IReadOnlyList<int>)p.Request.Tokens!).ToArray(), count);
            layerTaps?.Add(h); // h_0
        }
        else
        {
            var input = new float[rows * count * dim];
            for (int b = 0; b < rows; b++) group[b].Request.Hidden!.Data.CopyTo(input, b * count * dim);
            h = tensor(input, [(long)rows, count, dim]).to(model.DType, model.Device);
        }
        var hook = group[0].Request.Edge is null ? null : new RemoteLayerHook(grains, group.Select(p => p.Request).ToArray(), model.Config);
        h = model.RunLayers(h, batch, from, to, hook, layerTaps);
        batch.Commit();

        // With one new position per row (decoding) it is the last one: no index to build or apply.
        var lastRows = count == 1 ? null : tensor(Enumerable.Range(0, rows).Select(b => (long)b * count + count - 1).ToArray(), device: model.Device);
        Tensor AtLast(Tensor x) => lastRows is null ? x.view(-1, dim) : x.reshape(-1, dim).index_select(0, lastRows); // [rows, dim]
        float[][]? taps = null;
        int tapRows = layerTaps?.Count ?? 0;
        if (layerTaps is not null) // [rows, taps, dim]: each row's residual stream after each layer, at its last position
            taps = HostCopy.Rows(stack(layerTaps.Select(AtLast).ToArray(), 1));
        Activations? TapsOf(int b) => taps is not null && group[b].Request.WantTaps ? new Activations(taps[b], [tapRows, dim]) : null;

        var results = new ShardStepResult[rows];
        if (last)
        {
            var normed = model.FinalNorm.Forward(AtLast(h)); // n: what the LM head reads, and the gate
            var logits = HostCopy.Rows(model.HeadLogits(normed));
            var normedRows = wantTaps ? HostCopy.Rows(normed) : null;
            for (int b = 0; b < rows; b++)
            {
                var n = normedRows is not null && group[b].Request.WantTaps ? normedRows[b] : null;
                results[b] = new ShardStepResult(false, null, logits[b], TapsOf(b), n, hook?.Usage(b));
            }
            return results;
        }
        var data = HostCopy.Rows(h);
        for (int b = 0; b < rows; b++)
            results[b] = new ShardStepResult(false, new Activations(data[b], [count, dim]), null, TapsOf(b), Edge: hook?.Usage(b));
        return results;
    }
}
