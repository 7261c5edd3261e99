using Spa.Model.Plugins;
using Spa.Model.Training;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;
namespace Spa.Model.Tests;
public class LstScratchTests(ITestOutputHelper output)
{
    [Fact]
    public void Train()
    {
        var Model = Stories260K.Model;
        foreach (int seed in new[] { 5, 1, 2, 3, 4, 6, 7 })
        {
            using var plugin = PersonalPlugin.Create(Model, PluginKind.Ladder, CombinationMode.Spa, PluginDimensions.For(Model.Config), seed: seed);
            var data = Enumerable.Range(0, 16).Select(i => new TrainingSequence([1, 403, 407, 261, 378, 11, 20 + i % 4, 30, 40, 50, 60], 1)).ToArray();
            var options = new TrainingOptions { Epochs = 4, BatchSize = 8, LearningRate = 1e-2, GateObjective = "joint" };
            var trainer = new PluginTrainer(Model, plugin, options);
            var before = trainer.Evaluate(data, CombinationMode.Spa, LossKind.Plugin);
            trainer.Train(data, data);
            var after = trainer.Evaluate(data, CombinationMode.Spa, LossKind.Plugin);
            output.WriteLine($"seed {seed}: {before} -> {after}");
        }
    }
}
