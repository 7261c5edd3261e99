using Spa.Model;
using Spa.Model.Plugins;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.LoadTest;

/// <summary>
/// The plugins the simulated devices load, one directory per kind in a temporary folder deleted on dispose. Untrained
/// plugins with random weights (fixed by the seed) cost what trained ones cost: the same dimensions, calls and bytes;
/// a fresh plugin's zero output projection is replaced too, so the plugin really changes the tokens. A trained ladder
/// plugin can be given instead (<c>--plugin</c>); its gate then decides spa's and switch's M as it would in service.
/// </summary>
public sealed class PluginFiles : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"spa-load-{Environment.ProcessId}-{Guid.NewGuid():N}");
    private readonly Dictionary<PluginKind, string> _directories = [];

    /// <param name="ladder">A trained ladder plugin's directory, or null for a random one.</param>
    public PluginFiles(LlamaModel model, IEnumerable<PluginKind> kinds, string? ladder, int seed)
    {
        try
        {
            foreach (var kind in kinds.Distinct())
            {
                if (kind == PluginKind.Ladder && ladder is not null)
                {
                    using var trained = PersonalPlugin.Load(ladder, model); // a plugin for another base fails here, before the run
                    if (trained.Kind != PluginKind.Ladder) throw new ArgumentException($"--plugin: {ladder} holds a {PluginNames.Name(trained.Kind)} plugin, not a ladder");
                    _directories[kind] = Path.GetFullPath(ladder);
                    continue;
                }
                var directory = Path.Combine(_root, PluginNames.Name(kind));
                var mode = kind == PluginKind.Ladder ? CombinationMode.Spa : CombinationMode.Parallel;
                using var plugin = PersonalPlugin.Create(model, kind, mode, PluginDimensions.For(model.Config), seed: seed);
                using (no_grad())
                {
                    var generator = new Generator().manual_seed(seed);
                    using var scale = 0.2.ToScalar(); // held through the native calls (see Held)
                    foreach (var (_, parameter) in plugin.NamedParameters())
                    {
                        using var weights = randn(parameter.shape, generator: generator);
                        parameter.copy_(weights.mul_(scale));
                    }
                }
                plugin.Save(directory);
                _directories[kind] = directory;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Directory(PluginKind kind) => _directories[kind];

    public void Dispose()
    {
        if (System.IO.Directory.Exists(_root)) System.IO.Directory.Delete(_root, recursive: true);
    }
}
