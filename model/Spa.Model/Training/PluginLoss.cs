using Spa.Model.Plugins;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Training;

/// <summary>What a training step optimises.</summary>
public enum LossKind
{
    /// <summary>Cross-entropy of the plugin's logits in its mode (side, parallel, LoRA, adapters).</summary>
    Plugin,

    /// <summary>The design's joint objective: -log(p P_mode(y) + (1 - p) P_base(y)) + lambda p.</summary>
    JointGate,

    /// <summary>
    /// The two-stage gate: binary cross-entropy on "log P_parallel(y) - log P_base(y) > delta", per token or per word
    /// (<see cref="GateLabel"/>).
    /// </summary>
    GateOnly,
}

/// <summary>Masked mean losses over the target positions of a padded batch.</summary>
public static class PluginLoss
{
    /// <summary>
    /// targets, mask: [B, T] (next token at each position; 1 where it counts). Returns a scalar. Word labels need
    /// <paramref name="wordStarts"/>, whether each token id begins a word.
    /// </summary>
    public static Tensor Compute(PluginOutputs outputs, Tensor targets, Tensor mask, LossKind kind, double lambda, double delta,
        GateLabel label = GateLabel.Token, IReadOnlyList<bool>? wordStarts = null)
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
                if (label == GateLabel.Word)
                    needsEdge = WholeWords(needsEdge, targets, mask, wordStarts ?? throw new ArgumentException("word labels need the tokenizer's word starts", nameof(wordStarts)));
                perPosition = -(needsEdge * outputs.GateLogEdge! + needsEdge.neg().add_(one) * outputs.GateLogBase!);
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
        return ((perPosition * mask).sum() / mask.sum().clamp_min(one)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// labels, targets, mask: [B, T]. Returns the labels with every counted position of a word set when any of the
    /// word's positions is: a word is a counted position whose target begins a word, and the counted positions after
    /// it whose targets continue it.
    /// </summary>
    public static Tensor WholeWords(Tensor labels, Tensor targets, Tensor mask, IReadOnlyList<bool> wordStarts)
    {
        long rows = labels.shape[0], length = labels.shape[1];
        var marked = labels.cpu().to(ScalarType.Float32).data<float>().ToArray();
        var ids = targets.cpu().to(ScalarType.Int64).data<long>().ToArray();
        var counted = mask.cpu().to(ScalarType.Float32).data<float>().ToArray();
        var words = new float[marked.Length];
        for (long b = 0; b < rows; b++)
        {
            long t = 0;
            while (t < length)
            {
                long at = b * length + t;
                if (counted[at] == 0) { t++; continue; }
                long end = t + 1;
                while (end < length && counted[b * length + end] != 0 && !wordStarts[(int)ids[b * length + end]]) end++;
                float any = 0;
                for (long u = t; u < end; u++) any = Math.Max(any, marked[b * length + u]);
                for (long u = t; u < end; u++) words[b * length + u] = any;
                t = end;
            }
        }
        return tensor(words, [rows, length], device: labels.device);
    }
}
