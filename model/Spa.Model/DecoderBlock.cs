using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>One pre-norm decoder layer: h + attn(norm h), then + mlp(norm h).</summary>
public sealed class DecoderBlock(int layer, RmsNorm attentionNorm, Attention attention, RmsNorm mlpNorm, Mlp mlp)
{
    public RmsNorm AttentionNorm { get; } = attentionNorm;
    public Attention Attention { get; } = attention;
    public RmsNorm MlpNorm { get; } = mlpNorm;
    public Mlp Mlp { get; } = mlp;

    /// <summary>h: [B, T, dim], the residual stream. Returns the residual stream after this layer.</summary>
    public Tensor Forward(Tensor h, AttentionBatch batch, ILayerHook? hook = null)
    {
        using var scope = NewDisposeScope();
        var afterAttention = h.add(Attention.Forward(AttentionNorm.Forward(h), batch, hook), Held.One);
        var mlpOutput = Mlp.Forward(MlpNorm.Forward(afterAttention));
        if (hook is not null) mlpOutput = hook.AfterMlp(layer, mlpOutput);
        // Not in place: with a hook the residual stream may carry gradients to a plugin.
        return afterAttention.add(mlpOutput, Held.One).MoveToOuterDisposeScope();
    }
}
