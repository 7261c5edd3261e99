using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// What a plugin placed inside the base (LoRA, adapters) adds to a layer. Each call is a place where a split
/// deployment goes to the edge and back, so an implementation can count round trips where they really happen.
/// Shapes: x and outputs [B, T, d]; the query delta [B, T, heads*headDim]; the value delta [B, T, kvHeads*headDim].
/// </summary>
public interface ILayerHook
{
    /// <summary>Additions to the query and value projections of the layer's attention, or null for none.</summary>
    (Tensor Query, Tensor Value)? AttentionDelta(int layer, Tensor normalisedInput);

    /// <summary>The attention output, possibly transformed, before it joins the residual stream.</summary>
    Tensor AfterAttention(int layer, Tensor output);

    /// <summary>The MLP output, possibly transformed, before it joins the residual stream.</summary>
    Tensor AfterMlp(int layer, Tensor output);
}
