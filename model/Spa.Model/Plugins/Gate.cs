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
