using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>One pre-norm decoder layer: h + attn(norm h), then + mlp(norm h).</summary>
public sealed class DecoderBlock(RmsNorm attentionNorm, Attention attention, RmsNorm mlpNorm, Mlp mlp)
{
    public RmsNorm AttentionNorm { get; } = attentionNorm;
    public Attention Attention { get; } = attention;
    public RmsNorm MlpNorm { get; } = mlpNorm;
    public Mlp Mlp { get; } = mlp;

    /// <summary>h: [B, T, dim], the residual stream. Returns the residual stream after this layer.</summary>
    public Tensor Forward(Tensor h, AttentionBatch batch)
    {
        using var scope = NewDisposeScope();
        var afterAttention = h + Attention.Forward(AttentionNorm.Forward(h), batch);
        return afterAttention.add_(Mlp.Forward(MlpNorm.Forward(afterAttention))).MoveToOuterDisposeScope();
    }
}
