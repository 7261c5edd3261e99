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
        var gateUp = GateUp.Forward(x);
        long hidden = gateUp.size(-1) / 2;
        // Two narrows, not chunk(2): chunk's list of views costs more than both narrows together.
        var (gateInput, up) = (gateUp.narrow(-1, 0, hidden), gateUp.narrow(-1, hidden, hidden));
        // In place when nothing records a backward pass (silu's needs its input): one tensor fewer per layer and token.
        var gate = is_grad_enabled() ? F.silu(gateInput) : gateInput.silu_();
        return F.linear(gate.mul_(up), DownWeight).MoveToOuterDisposeScope();
    }
}
