using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>Logits of whole sequences with and without a plugin, and the gate's log-probabilities, at every position.</summary>
/// <param name="BaseLogits">[B, T, V] the base alone (no gradient).</param>
/// <param name="PluginLogits">[B, T, V] the plugin's logits in the mode: W_lm out (side, switch) or W_lm (n + out) (parallel, spa), or the base with LoRA or adapters inside.</param>
/// <param name="GateLogEdge">[B, T] log p, or null without a gate.</param>
/// <param name="GateLogBase">[B, T] log (1 - p), or null without a gate.</param>
public sealed record PluginOutputs(Tensor BaseLogits, Tensor PluginLogits, Tensor? GateLogEdge, Tensor? GateLogBase) : IDisposable
{
    public void Dispose()
    {
        BaseLogits.Dispose();
        PluginLogits.Dispose();
        GateLogEdge?.Dispose();
        GateLogBase?.Dispose();
    }
}

/// <summary>
/// Teacher-forced forward of a base with a personal plugin over whole sequences, for training and evaluation. For a
/// side network the base runs without gradient (nothing is back-propagated through it, which is where side
/// networks save memory); a plugin inside the base is trained through the frozen base, as it must be.
/// </summary>
public sealed class PluginForward(LlamaModel model, PersonalPlugin plugin)
{
    /// <summary>tokens: [B, T] int64, right-padded; lengths: real tokens per row.</summary>
    public PluginOutputs Run(Tensor tokens, IReadOnlyList<int> lengths, CombinationMode mode)
    {
        using var scope = NewDisposeScope();
        Tensor baseLogits, pluginLogits;
        Tensor? logEdge = null, logBase = null;
        if (plugin.Hook is { } hook)
        {
            using (no_grad()) baseLogits = model.Forward(tokens, lengths);
            pluginLogits = model.Logits(model.Hidden(tokens, lengths, hook));
        }
        else
        {
            Tensor taps, normed;
            using (no_grad())
            {
                taps = model.Taps(tokens, lengths);                      // [L+1, B, T, d]
                normed = model.FinalNorm.Forward(taps[model.Config.Layers]); // [B, T, d]
                baseLogits = model.HeadLogits(normed);
            }
            long b = tokens.shape[0], t = tokens.shape[1];
            var output = plugin.Lst is { } lst
                ? lst.ForwardSequence(taps, lengths) // attends over each sequence's earlier positions
                : plugin.Side!.forward(taps.reshape(model.Config.Layers + 1, b * t, model.Config.Dim)).reshape(b, t, model.Config.Dim);
            pluginLogits = Combine(model, mode, normed, output);
            if (plugin.Gate is { } gate) (logEdge, logBase) = gate.LogProbabilities(normed, taps[0]);
        }
        return new PluginOutputs(baseLogits.MoveToOuterDisposeScope(), pluginLogits.MoveToOuterDisposeScope(),
            logEdge?.MoveToOuterDisposeScope(), logBase?.MoveToOuterDisposeScope());
    }

    /// <summary>The logits of a token the edge was asked for: W_lm out (side, switch) or W_lm (n + out) (parallel, spa).</summary>
    public static Tensor Combine(LlamaModel model, CombinationMode mode, Tensor normed, Tensor output) => mode switch
    {
        CombinationMode.Side or CombinationMode.Switch => model.HeadLogits(output),
        CombinationMode.Parallel or CombinationMode.Spa => model.HeadLogits(normed.add(output, Held.One)),
        _ => throw new ArgumentException($"mode '{PluginNames.Name(mode)}' does not use the plugin's output"),
    };
}
