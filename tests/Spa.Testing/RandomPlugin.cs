using System.Collections.Concurrent;
using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Plugins;
using Spa.Model.Sampling;
using Spa.Model.Tokenizers;
using static TorchSharp.torch;

namespace Spa.Testing;

/// <summary>
/// Plugins of each kind for stories260K with random weights (randn * 0.2, so that they change the output), saved once
/// per test run, and the in-process engine's text with the ladder one.
/// </summary>
public static class RandomPlugin
{
    private static readonly ConcurrentDictionary<PluginKind, Lazy<string>> Saved = new();

    public static string Ladder => Of(PluginKind.Ladder);

    public static string Of(PluginKind kind) => Saved.GetOrAdd(kind, k => new Lazy<string>(() => Save(k))).Value;

    /// <summary>The greedy text of mode parallel with <see cref="Ladder"/>, generated in this process.</summary>
    public static string ParallelText(string prompt, int maxTokens)
    {
        using var model = LlamaModel.Load(SharedData.Stories260K, new ModelOptions());
        using var plugin = PersonalPlugin.Load(Ladder, model);
        var stepper = new PluginStepper(model, plugin, CombinationMode.Parallel, new EdgeTransport(ActivationType.Fp32));
        var generator = new TextGenerator(stepper, TokenizerLoader.Load(SharedData.Tok512, model.Config.VocabSize));
        return generator.Generate(prompt, maxTokens, SamplingOptions.Greedy).Text;
    }

    private static string Save(PluginKind kind)
    {
        var directory = Path.Combine(Path.GetTempPath(), $"spa-test-plugin-{Environment.ProcessId}-{PluginNames.Name(kind)}");
        using var model = LlamaModel.Load(SharedData.Stories260K, new ModelOptions());
        var mode = kind == PluginKind.Ladder ? CombinationMode.Spa : CombinationMode.Parallel;
        using var plugin = PersonalPlugin.Create(model, kind, mode, PluginDimensions.For(model.Config), seed: 3);
        using (no_grad())
            foreach (var (_, p) in plugin.NamedParameters()) p.copy_(randn(p.shape) * 0.2);
        plugin.Save(directory);
        return directory;
    }
}

/// <summary>The random ladder plugin in a folder of its own, for a spa-device process to load; disposing removes it.</summary>
public sealed class PluginCopy : IDisposable
{
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), $"spa-device-plugin-{Guid.NewGuid():N}");

    public void Make()
    {
        Directory.CreateDirectory(Folder);
        foreach (var file in Directory.GetFiles(RandomPlugin.Ladder)) File.Copy(file, Path.Combine(Folder, Path.GetFileName(file)), overwrite: true);
    }

    public void Dispose()
    {
        if (Directory.Exists(Folder)) Directory.Delete(Folder, recursive: true);
    }
}
