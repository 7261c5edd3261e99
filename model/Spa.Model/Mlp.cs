using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Spa.Model;

/// <summary>SwiGLU feed-forward: down(silu(gate x) * up x); gate and up are one stacked projection.</summary>
public sealed class Mlp(StackedProjection gateUp, Tensor downWeight)
{
    /// <summary>x -> [..., 2*hidden]: gate, then up.</summary>
    public StackedProjection GateUp { get; } = gateUp;
    public Tensor DownWeight { get; } = downWeight;

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var gateUp = GateUp.Forward(x).chunk(2, dim: -1);
        // In place when nothing records a backward pass (silu's needs its input): one tensor fewer per layer and token.
        var gate = is_grad_enabled() ? F.silu(gateUp[0]) : gateUp[0].silu_();
        return F.linear(gate.mul_(gateUp[1]), DownWeight).MoveToOuterDisposeScope();
    }
}
