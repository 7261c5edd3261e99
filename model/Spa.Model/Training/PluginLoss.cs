using Spa.Model.Plugins;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Training;

/// <summary>What a training step optimises.</summary>
public enum LossKind
{
    /// <summary>Cross-entropy of the plugin's logits in its mode (side, parallel, LoRA, adapters).</summary>
    Plugin,

    /// <summary>DESIGN's joint objective: -log(p P_mode(y) + (1 - p) P_base(y)) + lambda p.</summary>
    JointGate,

    /// <summary>The two-stage gate: binary cross-entropy on "log P_parallel(y) - log P_base(y) > delta".</summary>
    GateOnly,
}

/// <summary>Masked mean losses over the target positions of a padded batch.</summary>
public static class PluginLoss
{
    /// <summary>targets, mask: [B, T] (next token at each position; 1 where it counts). Returns a scalar.</summary>
    public static Tensor Compute(PluginOutputs outputs, Tensor targets, Tensor mask, LossKind kind, double lambda, double delta)
    {
        using var scope = NewDisposeScope();
        // Explicit Scalars, disposed here: implicit conversions are left to the finalizer (see RmsNorm).
        using var price = lambda.ToScalar();
        using var threshold = delta.ToScalar();
        using var one = 1.0.ToScalar();
        var index = targets.unsqueeze(-1);
        var logPlugin = outputs.PluginLogits.log_softmax(-1).gather(-1, index).squeeze(-1); // [B, T]
        Tensor perPosition;
        switch (kind)
        {
            case LossKind.Plugin:
                perPosition = -logPlugin;
                break;
            case LossKind.JointGate:
            {
                var logBase = outputs.BaseLogits.log_softmax(-1).gather(-1, index).squeeze(-1);
                var mixture = logaddexp(outputs.GateLogEdge! + logPlugin, outputs.GateLogBase! + logBase);
                perPosition = outputs.GateLogEdge!.exp().mul(price) - mixture; // not in place: exp keeps its output for the backward pass
                break;
            }
            case LossKind.GateOnly:
            {
                var logBase = outputs.BaseLogits.log_softmax(-1).gather(-1, index).squeeze(-1);
                var needsEdge = (logPlugin - logBase).gt(threshold).to(ScalarType.Float32).detach();
                perPosition = -(needsEdge * outputs.GateLogEdge! + needsEdge.neg().add_(one) * outputs.GateLogBase!);
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
        return ((perPosition * mask).sum() / mask.sum().clamp_min(one)).MoveToOuterDisposeScope();
    }
}
