using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Spa.Model;

/// <summary>
/// Linear projections of one input whose outputs are used side by side (q, k and v; gate and up). Stacked by rows into
/// one weight, they run as one call, which matters for small models, where a token's time is mostly per-call overhead.
/// Weights mapped from a checkpoint file stay as separate blocks, a call each: the file does not store them next to
/// each other, and stacking them would copy them into new memory (see <see cref="LlamaModel.Load"/>).
/// </summary>
public sealed class StackedProjection(params Tensor[] blocks)
{
    /// <summary>Each [rows_i, dim]: the stacked weight alone, or the projections' weights in output order.</summary>
    public IReadOnlyList<Tensor> Blocks { get; } = blocks;

    /// <summary>x: [..., dim]. Returns [..., sum of rows_i], the projections' outputs in order.</summary>
    public Tensor Forward(Tensor x)
    {
        if (Blocks.Count == 1) return F.linear(x, Blocks[0]);
        using var scope = NewDisposeScope();
        return cat(Blocks.Select(w => F.linear(x, w)).ToArray(), -1).MoveToOuterDisposeScope();
    }
}
