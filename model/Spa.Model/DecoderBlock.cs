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
        var afterAttention = Residual(h, Attention.Forward(AttentionNorm.Forward(h), batch, hook), hook);
        var mlpOutput = Mlp.Forward(MlpNorm.Forward(afterAttention));
        if (hook is not null) mlpOutput = hook.AfterMlp(layer, mlpOutput);
        return Residual(afterAttention, mlpOutput, hook).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// h + output. Without a hook the output is a sublayer's fresh projection, which nothing else holds and whose
    /// backward does not need it, so the residual is added into it (no new tensor); a hook's output may be a tensor
    /// autograd still needs, so it gets a new one. The residual stream h itself is never written: it may be a tap.
    /// </summary>
    private static Tensor Residual(Tensor h, Tensor output, ILayerHook? hook) =>
        hook is null ? output.add_(h, Held.One) : h.add(output, Held.One);
}
