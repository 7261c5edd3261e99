using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

internal static class PerLayer
{
    /// <summary>One freshly initialised module per layer, registered as a list (state-dict names "name.N.weight").</summary>
    public static ModuleList<T> Modules<T>(int layers, Func<T> make) where T : nn.Module =>
        new(Enumerable.Range(0, layers).Select(_ => make()).ToArray());

    /// <summary>
    /// The ladders' down-projections of the taps, shared by every side network that reads them:
    /// taps [L+1, ..., d] (h_0..h_L) to [L+1, ..., width]: input(h_0), downs[0](h_1), ..., downs[L-1](h_L).
    /// </summary>
    public static Tensor Project(Linear input, ModuleList<Linear> downs, Tensor taps)
    {
        using var scope = NewDisposeScope();
        var projected = new Tensor[downs.Count + 1];
        projected[0] = input.forward(taps[0]);
        for (int l = 1; l <= downs.Count; l++) projected[l] = downs[l - 1].forward(taps[l]);
        return stack(projected).MoveToOuterDisposeScope();
    }
}
