using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Plugins;
using Spa.Model.Sampling;
using Spa.Model.Tokenizers;
using static TorchSharp.torch;

namespace Spa.Cli.Tests;

/// <summary>A ladder plugin with random weights (randn * 0.2, so that it changes the text) and the in-process engine's text with it.</summary>
public static class RandomLadderPlugin
{
    /// <summary>Saves the plugin to <paramref name="directory"/> and returns the greedy text of mode parallel in this process.</summary>
    public static string SaveAndGenerate(string directory, string prompt, int maxTokens)
    {
        using var model = LlamaModel.Load(SharedData.Stories260K, new ModelOptions());
        using var plugin = PersonalPlugin.Create(model, PluginKind.Ladder, CombinationMode.Spa, PluginDimensions.For(model.Config), seed: 5);
        using (no_grad())
            foreach (var (_, p) in plugin.NamedParameters()) p.copy_(randn(p.shape) * 0.2);
        plugin.Save(directory);
        var stepper = new PluginStepper(model, plugin, CombinationMode.Parallel, new EdgeTransport(ActivationType.Fp32));
        var generator = new TextGenerator(stepper, TokenizerLoader.Load(SharedData.Tok512, model.Config.VocabSize));
        return generator.Generate(prompt, maxTokens, SamplingOptions.Greedy).Text;
    }
}
