using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>What the gate reads: activations of the base, which the cloud computes anyway.</summary>
public enum GateInput
{
    /// <summary>The paper's gate: n, the base's normalised last hidden state, through W_g (2 x d, no bias).</summary>
    Hidden,

    /// <summary>
    /// n and the current token's embedding h_0 (RMS-normalised, without a learned scale), through W_g (2 x 2d) and a
    /// bias. n says what the base expects next; h_0 says which token the sequence is at, which is what tells that a
    /// private name has begun and is not finished (its later pieces follow its first), something n alone carries weakly.
    /// </summary>
    HiddenAndToken,
}

/// <summary>How a gate is trained with its side network (switch, spa).</summary>
public enum GateObjective
{
    /// <summary>The side network first, in parallel (switch: side), then the gate on labels drawn from its gain.</summary>
    TwoStage,

    /// <summary>Gate and side network together on the expected loss plus lambda per round trip.</summary>
    Joint,
}

/// <summary>How the two-stage gate's labels are drawn from the side network's gain log P_plugin(y) - log P_base(y).</summary>
public enum GateLabel
{
    /// <summary>A position needs the edge when the gain at its target exceeds delta (the design's rule).</summary>
    Token,

    /// <summary>
    /// Every position of a word needs the edge when the gain exceeds delta at any of its positions: a private name is
    /// several tokens, and the device is asked for all of them, including those the base could copy from earlier in
    /// the text. A word is a token that starts one (a piece with a leading space, or punctuation) and the pieces that
    /// continue it.
    /// </summary>
    Word,
}

/// <summary>
/// Decides per token whether the edge is asked: p = softmax(W_g x + b)[edge], where x is n or [n; norm(h_0)] (see
/// <see cref="GateInput"/>); the token goes to the edge when p > tau. It runs in the cloud, on what the cloud computes
/// anyway: both n and h_0 are base activations.
/// </summary>
public sealed class Gate : nn.Module<Tensor, Tensor, Tensor>
{
    public const int BaseChoice = 0;
    public const int EdgeChoice = 1;

    private readonly Linear classifier;

    public Gate(int dim, GateInput input) : base(nameof(Gate))
    {
        Input = input;
        Dim = dim;
        classifier = nn.Linear(Width, 2, hasBias: input == GateInput.HiddenAndToken);
        RegisterComponents();
    }

    public GateInput Input { get; }
    public int Dim { get; }

    /// <summary>Values the classifier reads per position: d, or 2d with the token.</summary>
    public int Width => Input == GateInput.Hidden ? Dim : 2 * Dim;

    /// <summary>Number of values in <see cref="Weights"/>: W_g [2, width], then the bias [2] when there is one.</summary>
    public static int WeightCount(int dim, GateInput input) => input == GateInput.Hidden ? 2 * dim : 2 * 2 * dim + 2;

    /// <summary>
    /// W_g as row-major fp32 values [2, width], followed by the bias [2] when the gate has one: what a device hands the
    /// cloud so that it can gate without the rest of the plugin.
    /// </summary>
    public float[] Weights()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var parts = new List<Tensor> { classifier.weight!.flatten() };
        if (classifier.bias is { } bias) parts.Add(bias);
        return HostCopy.Floats(cat(parts));
    }

    /// <summary>A gate with the given <see cref="Weights"/>, its tensors in the given dtype and device.</summary>
    public static Gate FromWeights(float[] weights, int dim, GateInput input, ScalarType dtype, Device device)
    {
        int expected = WeightCount(dim, input);
        if (weights.Length != expected) throw new ArgumentException($"a gate reading {PluginNames.Name(input)} for width {dim} has {expected} weights, got {weights.Length}");
        if (weights.Any(w => !float.IsFinite(w))) throw new ArgumentException("the gate's weights must be finite");
        var gate = new Gate(dim, input);
        using (no_grad())
        {
            int matrix = 2 * gate.Width;
            using var w = tensor(weights[..matrix], [2L, gate.Width]);
            gate.classifier.weight!.requires_grad = false;
            gate.classifier.weight!.copy_(w);
            if (gate.classifier.bias is { } bias)
            {
                using var b = tensor(weights[matrix..]);
                bias.requires_grad = false;
                bias.copy_(b);
            }
        }
        gate.to(dtype).to(device);
        return gate;
    }

    /// <summary>n, token: [..., d] (token is h_0 of the same positions). Returns the probability that the edge is needed: [...].</summary>
    public override Tensor forward(Tensor n, Tensor token)
    {
        using var scope = NewDisposeScope();
        return Logits(n, token).softmax(-1).select(-1, EdgeChoice).MoveToOuterDisposeScope();
    }

    /// <summary>n, token: [..., d]. Returns log p and log(1 - p), each [...], computed stably for training.</summary>
    public (Tensor LogEdge, Tensor LogBase) LogProbabilities(Tensor n, Tensor token)
    {
        using var scope = NewDisposeScope();
        var logs = Logits(n, token).log_softmax(-1);
        return (logs.select(-1, EdgeChoice).MoveToOuterDisposeScope(), logs.select(-1, BaseChoice).MoveToOuterDisposeScope());
    }

    private Tensor Logits(Tensor n, Tensor token)
    {
        if (Input == GateInput.Hidden) return classifier.forward(n);
        using var scope = NewDisposeScope();
        return classifier.forward(cat([n, token * RmsNorm.InverseRms(token, 1e-5)], -1)).MoveToOuterDisposeScope();
    }
}
