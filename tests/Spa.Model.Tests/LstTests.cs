using Spa.Model.Generation;
using Spa.Model.Latency;
using Spa.Model.Plugins;
using Spa.Model.Sampling;
using Spa.Model.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Generator = Spa.Model.Generation.Generator;

namespace Spa.Model.Tests;

// Not in parallel with other classes: PersonalPlugin.Create seeds torch's global generator, and a plugin created here
// while another class builds its own would change that one's initial weights (PluginTests' training test depends on its seed).
[CollectionDefinition(nameof(LstTests), DisableParallelization = true)]
public sealed class LstTestsCollection;

[Collection(nameof(LstTests))]
public class LstTests
{
    private static LlamaModel Model => Stories260K.Model;

    // Half a unit of the fourth decimal. Rounding both sides to four decimals instead failed on values 3e-6 apart that
    // straddle a rounding boundary (-0.8919487 and -0.8919514, on an AMD EPYC) and passed values 9e-5 apart.
    private const double FourDecimals = 5e-5;
    private static LlamaConfig Config => Model.Config;
    private static readonly int[] Prompt = [1, 403, 407, 261, 378];
    private static readonly int[] ShortPrompt = [1, 365, 301];

    // Random weights from a generator of the test's own: test classes run in parallel and share torch's global one.
    private static PersonalPlugin RandomLst(CombinationMode mode, ulong seed = 1)
    {
        var plugin = PersonalPlugin.Create(Model, PluginKind.Lst, mode, PluginDimensions.For(Config), seed: (int)seed);
        using var generator = new torch.Generator(seed);
        using var scale = 0.2.ToScalar();
        using (no_grad())
        {
            foreach (var (_, p) in plugin.NamedParameters())
            {
                using var values = randn(p.shape, generator: generator);
                p.copy_(values.mul_(scale));
            }
        }
        return plugin;
    }

    [Fact]
    public void TheSideTransformerIsDOverRWideAndItsParametersAreTheLatencyModelsCount()
    {
        using var plugin = RandomLst(CombinationMode.Spa);
        var lst = plugin.Lst!;
        Assert.Equal(Config.Dim / 8, lst.Config.Dim);
        Assert.Equal(Math.Max(1, Config.Heads / 8), lst.Config.Heads);
        Assert.Equal(lst.Config.Heads, lst.Config.KvHeads);
        Assert.Equal(Config.HiddenDim / 8, lst.Config.HiddenDim);
        Assert.Equal(RopeStyle.RotateHalf, lst.Config.Rope);
        Assert.All(plugin.NamedParameters(), p => Assert.True(p.Name.StartsWith("lst.") || p.Name.StartsWith("gate."), p.Name));
        Assert.Equal(PluginParameters.Count(Config, PluginKind.Lst, plugin.Dimensions), plugin.DeviceParameterCount);
        Assert.True(plugin.IsSideNetwork);
    }

    [Theory]
    [InlineData(CombinationMode.Parallel)]
    [InlineData(CombinationMode.Spa)]
    public void AFreshLSTWithItsZeroUpProjectionEqualsTheBase(CombinationMode mode)
    {
        using var plugin = PersonalPlugin.Create(Model, PluginKind.Lst, mode, PluginDimensions.For(Config), seed: 3);
        var stepper = new PluginStepper(Model, plugin, mode, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new ThresholdPolicy(0));
        Assert.Equal(Greedy(Model, Prompt, 30), Greedy(stepper, Prompt, 30));
        Assert.Equal(1.0, stepper.RoundTripsPerToken);
    }

    [Theory]
    [InlineData(TapPlacement.Edge)]
    [InlineData(TapPlacement.Cloud)]
    public void CachedDecodingEqualsRecomputingTheWholeSequenceAtEveryStep(TapPlacement placement)
    {
        using var plugin = RandomLst(CombinationMode.Side);
        var stepper = new PluginStepper(Model, plugin, CombinationMode.Side, new EdgeTransport(ActivationType.Fp32), placement);
        var expected = Recomputed(plugin, Prompt, 30);
        Assert.NotEqual(Greedy(Model, Prompt, 30), expected); // the random LST really changes the text
        Assert.Equal(expected, Greedy(stepper, Prompt, 30));

        // Many sequences in one batch: prompts of different lengths prefill together (padded), then decode together,
        // and sequences that end leave the batch.
        var batched = new Generator(stepper).DecodeBatchGreedy([Prompt, ShortPrompt, [1]], 20);
        Assert.Equal(Recomputed(plugin, Prompt, 20), batched[0]);
        Assert.Equal(Recomputed(plugin, ShortPrompt, 20), batched[1]);
        Assert.Equal(Recomputed(plugin, [1], 20), batched[2]);
    }

    [Theory]
    [InlineData(CombinationMode.Spa)]
    [InlineData(CombinationMode.Switch)]
    public void SkippedTokensRideAlongWithTheNextRoundTrip(CombinationMode mode)
    {
        using var plugin = RandomLst(mode, seed: 3);
        var transport = new EdgeTransport(ActivationType.Fp32);
        var stepper = new PluginStepper(Model, plugin, mode, transport, gatePolicy: () => new ThresholdPolicy(0.5));
        var decoded = new Generator(stepper).Decode(Prompt, 40, SamplingOptions.Greedy).ToList();
        var generated = decoded.Select(t => t.Id).ToList();
        var decisions = stepper.Decisions;
        Assert.Equal(generated.Count, decisions.Count);

        // The seed gives what the test is about: tokens skipped before a round trip, and tokens skipped after the last.
        int sent = decisions.Count(d => d.Sent);
        int lastSent = decisions.FindLastIndex(d => d.Sent);
        Assert.True(lastSent > 0 && decisions.Take(lastSent).Any(d => !d.Sent), "no skipped token rides along");
        Assert.True(lastSent < decisions.Count - 1, "the sequence ends with a round trip");

        // M is the measured gate rate; each round trip returns one out vector.
        Assert.Equal(sent, transport.RoundTrips);
        Assert.Equal((double)sent / decisions.Count, stepper.RoundTripsPerToken, 12);
        Assert.Equal(sent * Config.Dim * 4L, transport.BytesDown);

        // Every position up to the last round trip went up exactly once (the prompt with the first step, skipped tokens
        // with the next round trip); the positions after it are still buffered in the cloud. Step k ends at position
        // prompt + k - 1, so the last round trip carried positions 0 .. prompt + lastSent - 1.
        long positionsSent = Prompt.Length + lastSent;
        Assert.Equal(positionsSent * (Config.Layers + 1) * Config.Dim * 4, transport.BytesUp);

        // And what the device answered is what the LST computes over the whole sequence: under teacher forcing the
        // chosen tokens and their log-probabilities are those of the cached, ride-along decoding (the plugin's
        // logits where the gate sent the token, the base's elsewhere).
        int[] sequence = [.. Prompt, .. generated[..^1]];
        using var tokens = Model.PadTokens([sequence], sequence.Length);
        using var outputs = new PluginForward(Model, plugin).Run(tokens, [sequence.Length], mode);
        using var probabilities = outputs.GateLogEdge!.exp();
        using var pluginLogProbabilities = outputs.PluginLogits.log_softmax(-1);
        using var baseLogProbabilities = outputs.BaseLogits.log_softmax(-1);
        for (int k = 0; k < generated.Count; k++)
        {
            int position = Prompt.Length - 1 + k;
            Assert.Equal(decisions[k].Probability, probabilities[0, position].item<float>(), FourDecimals);
            var logProbabilities = decisions[k].Sent ? pluginLogProbabilities : baseLogProbabilities;
            Assert.Equal(generated[k], (int)logProbabilities[0, position].argmax().item<long>());
            Assert.Equal(decoded[k].LogProbability, logProbabilities[0, position, generated[k]].item<float>(), FourDecimals);
        }
    }

    [Fact]
    public void BeamSearchWhichCopiesCacheSlotsIsRefusedClearly()
    {
        using var plugin = RandomLst(CombinationMode.Parallel);
        var stepper = new PluginStepper(Model, plugin, CombinationMode.Parallel, new EdgeTransport(ActivationType.Fp32));
        var error = Assert.Throws<InvalidOperationException>(() => new BeamSearch(new Generator(stepper)).Run(Prompt, 10, 2, 1.0));
        Assert.Contains("beam search", error.Message);
    }

    [Fact]
    public void ASavedLSTLoadsBackIdentical()
    {
        var directory = Path.Combine(Path.GetTempPath(), "spa-lst-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var plugin = RandomLst(CombinationMode.Spa);
            plugin.Save(directory);
            using var loaded = PersonalPlugin.Load(directory, Model);
            Assert.Equal(PluginKind.Lst, loaded.Kind);
            Assert.Equal(CombinationMode.Spa, loaded.Mode);
            Assert.Equal(plugin.Dimensions, loaded.Dimensions);
            var original = plugin.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
            Assert.Equal(original.Keys.Order(), loaded.NamedParameters().Select(p => p.Name).Order());
            foreach (var (name, parameter) in loaded.NamedParameters())
                Assert.True(original[name].bytes.SequenceEqual(parameter.bytes), name);
            Assert.Equal(
                Greedy(new PluginStepper(Model, plugin, CombinationMode.Spa, new EdgeTransport(ActivationType.Fp32)), Prompt, 20),
                Greedy(new PluginStepper(Model, loaded, CombinationMode.Spa, new EdgeTransport(ActivationType.Fp32)), Prompt, 20));
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Theory]
    [InlineData(CombinationMode.Side, GateObjective.Joint)]
    [InlineData(CombinationMode.Parallel, GateObjective.Joint)]
    [InlineData(CombinationMode.Spa, GateObjective.Joint)]
    public void TrainingForAFewStepsLowersTheLoss(CombinationMode mode, GateObjective objective)
    {
        using var plugin = PersonalPlugin.Create(Model, PluginKind.Lst, mode, PluginDimensions.For(Config), seed: 5);
        var data = Enumerable.Range(0, 16).Select(i => new TrainingSequence([1, 403, 407, 261, 378, 11, 20 + i % 4, 30, 40, 50, 60], 1)).ToArray();
        var options = new TrainingOptions { Epochs = 4, BatchSize = 8, LearningRate = 1e-2, GateObjective = objective, WordStarts = Stories260K.WordStarts };
        var trainer = new PluginTrainer(Model, plugin, options);
        var before = trainer.Evaluate(data, mode, LossKind.Plugin);
        var report = trainer.Train(data, data);
        var after = trainer.Evaluate(data, mode, LossKind.Plugin);
        Assert.True(after < before - 0.1, $"loss {before} -> {after}");
        Assert.True(report.Steps > 0);
    }

    // Greedy decoding in side mode with no cache: the LST over the whole sequence so far, at every step.
    private static List<int> Recomputed(PersonalPlugin plugin, int[] prompt, int tokens)
    {
        var sequence = new List<int>(prompt);
        var generated = new List<int>();
        using var noGrad = no_grad();
        while (generated.Count < tokens)
        {
            using var scope = NewDisposeScope();
            var input = Model.PadTokens([sequence], sequence.Count);
            var output = plugin.Lst!.ForwardSequence(Model.Taps(input, [sequence.Count]), [sequence.Count]); // [1, T, d]
            int next = (int)F.linear(output[0, sequence.Count - 1], Model.LmHead).argmax().item<long>();
            generated.Add(next);
            sequence.Add(next);
            if (next == Config.EosId || next == Config.BosId) break;
        }
        return generated;
    }

    private static List<int> Greedy(ITokenStepper stepper, int[] prompt, int tokens) =>
        new Generator(stepper).Decode(prompt, tokens, SamplingOptions.Greedy).Select(t => t.Id).ToList();
}
