using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// Decides per token whether the edge is asked: p = softmax(W_g n)[edge] with W_g a 2 x d matrix without bias, read
/// from the base's normalised last hidden state n; the token goes to the edge when p > tau. It runs in the cloud.
/// </summary>
public sealed class Gate : nn.Module<Tensor, Tensor>
{
    public const int BaseChoice = 0;
    public const int EdgeChoice = 1;

    private readonly Linear classifier;

    public Gate(int dim) : base(nameof(Gate))
    {
        classifier = nn.Linear(dim, 2, hasBias: false);
        RegisterComponents();
    }

    /// <summary>W_g as row-major fp32 values [2, d]: what a device hands the cloud so that it can gate without the rest of the plugin.</summary>
    public float[] Weights()
    {
        using var noGrad = no_grad();
        return classifier.weight!.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
    }

    /// <summary>A gate with the given W_g ([2, d] row-major fp32), its tensors in the given dtype and device.</summary>
    public static Gate FromWeights(float[] weights, int dim, ScalarType dtype, Device device)
    {
        if (weights.Length != 2 * dim) throw new ArgumentException($"a gate for width {dim} has {2 * dim} weights, got {weights.Length}");
        if (weights.Any(w => !float.IsFinite(w))) throw new ArgumentException("the gate's weights must be finite");
        var gate = new Gate(dim);
        using (no_grad())
        using (var values = tensor(weights, [2L, dim]))
        {
            gate.classifier.weight!.requires_grad = false;
            gate.classifier.weight!.copy_(values);
        }
        gate.to(dtype).to(device);
        return gate;
    }

    /// <summary>n: [..., d]. Returns the probability that the edge is needed: [...].</summary>
    public override Tensor forward(Tensor n)
    {
        using var scope = NewDisposeScope();
        return classifier.forward(n).softmax(-1).select(-1, EdgeChoice).MoveToOuterDisposeScope();
    }

    /// <summary>n: [..., d]. Returns log p and log(1 - p), each [...], computed stably for training.</summary>
    public (Tensor LogEdge, Tensor LogBase) LogProbabilities(Tensor n)
    {
        using var scope = NewDisposeScope();
        var logs = classifier.forward(n).log_softmax(-1);
        return (logs.select(-1, EdgeChoice).MoveToOuterDisposeScope(), logs.select(-1, BaseChoice).MoveToOuterDisposeScope());
    }
}
