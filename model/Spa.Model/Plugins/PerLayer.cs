using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

internal static class PerLayer
{
    /// <summary>One freshly initialised module per layer, registered as a list (state-dict names "name.N.weight").</summary>
    public static ModuleList<T> Modules<T>(int layers, Func<T> make) where T : nn.Module =>
        new(Enumerable.Range(0, layers).Select(_ => make()).ToArray());
}
