using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Spa.Model;

/// <summary>Grouped-query self-attention with rotary positions. q, k and v are one stacked projection.</summary>
public sealed class Attention(LlamaConfig config, int layer, StackedProjection qkv, Tensor outputWeight, RotaryEmbedding rope)
{
    private readonly int _heads = config.Heads;
    private readonly int _kvHeads = config.KvHeads;
    private readonly int _headDim = config.HeadDim;

    /// <summary>x -> [..., heads*headDim + 2*kvHeads*headDim]: q, then k, then v.</summary>
    public StackedProjection Qkv { get; } = qkv;
    public Tensor OutputWeight { get; } = outputWeight;

    /// <summary>x: [B, T, dim] (already normalised). Returns [B, T, dim], a new tensor the caller may add to in place.</summary>
    public Tensor Forward(Tensor x, AttentionBatch batch, ILayerHook? hook = null)
    {
        using var scope = NewDisposeScope();
        long b = x.size(0), t = x.size(1);
        var projected = Qkv.Forward(x);
        if (hook?.AttentionDelta(layer, x) is var (queryDelta, valueDelta))
            projected = projected.add(cat([queryDelta, zeros(b, t, _kvHeads * _headDim, dtype: x.dtype, device: x.device), valueDelta], -1), Held.One);
        var qkv = projected.view(b, t, _heads + 2 * _kvHeads, _headDim);
        var rotated = rope.Apply(qkv.narrow(2, 0, _heads + _kvHeads), batch.RopeRotations); // q and k rotate together
        // On the CPU in float32 a host loop stores and attends (see CpuAttention); elsewhere libtorch does.
        var merged = batch.AttendsOnCpu ? batch.AttendOnCpu(layer, rotated, qkv) : LibTorchAttention(rotated, qkv, batch, b, t);
        var output = F.linear(merged, OutputWeight);
        return (hook is null ? output : hook.AfterAttention(layer, output)).MoveToOuterDisposeScope();
    }

    /// <summary>rotated: [B, T, heads + kvHeads, headDim]; qkv: [B, T, heads + 2 kvHeads, headDim]. Returns [B, T, heads * headDim].</summary>
    private Tensor LibTorchAttention(Tensor rotated, Tensor qkv, AttentionBatch batch, long b, long t)
    {
        var q = rotated.narrow(2, 0, _heads);
        var k = rotated.narrow(2, _heads, _kvHeads);
        var v = qkv.narrow(2, _heads + _kvHeads, _kvHeads);

        var (keys, values) = batch.KeysAndValues(layer, k, v);                 // [B, kvHeads, L, headDim]
        int groups = _heads / _kvHeads;
        // Query head h uses kv head h / groups. With one new token per row (decoding) the heads are already in that
        // order, so the transposes that move T next to headDim are skipped: three calls fewer per layer and token.
        var grouped = t == 1 ? q.reshape(b, _kvHeads, groups, _headDim) : q.transpose(1, 2).reshape(b, _kvHeads, groups * t, _headDim);
        var attended = F.scaled_dot_product_attention(grouped, keys, values, batch.Mask);
        return t == 1 ? attended.view(b, 1, _heads * _headDim) : attended.view(b, _heads, t, _headDim).transpose(1, 2).reshape(b, t, _heads * _headDim);
    }
}
