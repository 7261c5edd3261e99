using System.Text.Json;
using System.Text.Json.Nodes;
using Spa.Model.Generation;
using Spa.Model.Plugins;
using Spa.Model.Sampling;
using Spa.Model.Training;
using static TorchSharp.torch;
using Generator = Spa.Model.Generation.Generator;

namespace Spa.Model.Tests;

public class PluginTests
{
    private static LlamaModel Model => Stories260K.Model;
    private static LlamaConfig Config => Model.Config;
    private static readonly int[] Prompt = [1, 403, 407, 261, 378];

    private static PersonalPlugin RandomPlugin(PluginKind kind, CombinationMode mode, int seed = 1)
    {
        var plugin = PersonalPlugin.Create(Model, kind, mode, PluginDimensions.For(Config), seed: seed);
        using (no_grad())
            foreach (var (_, p) in plugin.NamedParameters()) p.copy_(randn(p.shape) * 0.2);
        return plugin;
    }

    [Fact]
    public void TheLadderMatchesASlowComputationOfItsEquations()
    {
        using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Parallel);
        var w = plugin.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.detach());
        using var taps = randn(Config.Layers + 1, 3, Config.Dim);
        using var fast = plugin.Side!.forward(taps);
        for (int n = 0; n < 3; n++)
        {
            // s_0 = W_in h_0 + b_in; s_l = D_l h_l + b_l + A_l(ReLU(s_{l-1})); out = W_out ReLU(s_L) + b_out
            var s = MatVec(w["side.input.weight"], taps[0, n]) + w["side.input.bias"];
            for (int l = 1; l <= Config.Layers; l++)
            {
                var z = s.relu();
                var adapter = z + MatVec(w[$"side.adapterOut.{l - 1}.weight"], (MatVec(w[$"side.adapterIn.{l - 1}.weight"], z) + w[$"side.adapterIn.{l - 1}.bias"]).relu()) + w[$"side.adapterOut.{l - 1}.bias"];
                s = MatVec(w[$"side.downs.{l - 1}.weight"], taps[l, n]) + w[$"side.downs.{l - 1}.bias"] + adapter;
            }
            var slow = MatVec(w["side.output.weight"], s.relu()) + w["side.output.bias"];
            Assert.True((slow - fast[n]).abs().max().item<float>() < 1e-5);
        }
    }

    [Fact]
    public void LoRAEqualsTheBaseWithMergedWeights()
    {
        using var plugin = RandomPlugin(PluginKind.Lora, CombinationMode.Parallel);
        var w = plugin.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.detach());
        using var checkpoint = Stories260K.ReadCheckpoint();
        double scale = plugin.Dimensions.LoraAlpha / plugin.Dimensions.LoraRank;
        var merged = new Dictionary<string, Tensor>(checkpoint.Tensors);
        for (int l = 0; l < Config.Layers; l++)
        {
            merged[Checkpoints.WeightNames.Query(l)] = checkpoint.Tensors[Checkpoints.WeightNames.Query(l)] + scale * w[$"lora.queryUp.{l}.weight"].matmul(w[$"lora.queryDown.{l}.weight"]);
            merged[Checkpoints.WeightNames.Value(l)] = checkpoint.Tensors[Checkpoints.WeightNames.Value(l)] + scale * w[$"lora.valueUp.{l}.weight"].matmul(w[$"lora.valueDown.{l}.weight"]);
        }
        using var mergedModel = new LlamaModel(new Checkpoints.Checkpoint(Config, merged, "merged"), new ModelOptions());
        using var tokens = Model.PadTokens([Prompt], Prompt.Length);
        using var expected = mergedModel.Forward(tokens, [Prompt.Length]);
        using var outputs = new PluginForward(Model, plugin).Run(tokens, [Prompt.Length], CombinationMode.Parallel);
        Assert.True((expected - outputs.PluginLogits).abs().max().item<float>() < 1e-4);
    }

    [Fact]
    public void AnAdapterComputesXPlusUReluVX()
    {
        using var plugin = RandomPlugin(PluginKind.Adapter, CombinationMode.Parallel);
        var w = plugin.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.detach());
        using var x = randn(2, 3, Config.Dim);
        using var fast = plugin.Adapter!.AfterMlp(2, x);
        var slow = x + (x.matmul(w["adapter.mlpDown.2.weight"].t()) + w["adapter.mlpDown.2.bias"]).relu().matmul(w["adapter.mlpUp.2.weight"].t()) + w["adapter.mlpUp.2.bias"];
        Assert.True((slow - fast).abs().max().item<float>() < 1e-5);
    }

    [Theory]
    [InlineData(CombinationMode.Parallel)]
    [InlineData(CombinationMode.Spa)]
    public void AFreshLadderWithItsZeroOutputProjectionEqualsTheBase(CombinationMode mode)
    {
        using var plugin = PersonalPlugin.Create(Model, PluginKind.Ladder, mode, PluginDimensions.For(Config), seed: 3);
        var stepper = new PluginStepper(Model, plugin, mode, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new ThresholdPolicy(0));
        Assert.Equal(Greedy(Model, 40), Greedy(stepper, 40));
    }

    [Fact]
    public void TheGateAtTauZeroIsParallelAndAtTauOneIsTheBase()
    {
        using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Spa);
        var parallel = Greedy(new PluginStepper(Model, plugin, CombinationMode.Parallel, new EdgeTransport(ActivationType.Fp32)), 40);
        var tauZero = new PluginStepper(Model, plugin, CombinationMode.Spa, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new ThresholdPolicy(0));
        var tauOne = new PluginStepper(Model, plugin, CombinationMode.Spa, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new ThresholdPolicy(1));
        Assert.Equal(parallel, Greedy(tauZero, 40));
        Assert.Equal(Greedy(Model, 40), Greedy(tauOne, 40));
        Assert.Equal(1.0, tauZero.RoundTripsPerToken);
        Assert.Equal(0.0, tauOne.RoundTripsPerToken);
        Assert.NotEqual(parallel, Greedy(Model, 40));
    }

    [Theory]
    [InlineData(PluginKind.Lora, CombinationMode.Parallel)]
    [InlineData(PluginKind.Adapter, CombinationMode.Parallel)]
    [InlineData(PluginKind.Ladder, CombinationMode.Side)]
    [InlineData(PluginKind.Ladder, CombinationMode.Parallel)]
    [InlineData(PluginKind.Ladder, CombinationMode.Switch)]
    [InlineData(PluginKind.Ladder, CombinationMode.Spa)]
    public void MIsCountedFromRealCalls(PluginKind kind, CombinationMode mode)
    {
        using var plugin = RandomPlugin(kind, mode);
        var stepper = new PluginStepper(Model, plugin, mode, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new ThresholdPolicy(0.5));
        int generated = Greedy(stepper, 30).Count;
        Assert.Equal(generated, stepper.Tokens);
        double expected = (kind, mode) switch
        {
            (PluginKind.Lora, _) => Config.Layers,
            (PluginKind.Adapter, _) => 2 * Config.Layers,
            (_, CombinationMode.Side or CombinationMode.Parallel) => 1,
            _ => stepper.Decisions.Count(d => d.Sent) / (double)stepper.Decisions.Count, // the measured gate rate
        };
        Assert.Equal(expected, stepper.RoundTripsPerToken, 9);
        if (mode is CombinationMode.Switch or CombinationMode.Spa)
        {
            Assert.Equal(generated, stepper.Decisions.Count);
            Assert.All(stepper.Decisions, d => Assert.Equal(d.Probability > 0.5, d.Sent));
        }
    }

    [Theory]
    [InlineData(TapPlacement.Edge, ActivationType.Fp32, 6 * 64 * 4, 64 * 4)]
    [InlineData(TapPlacement.Edge, ActivationType.Int8, 6 * (64 + 4), 64 + 4)]
    [InlineData(TapPlacement.Cloud, ActivationType.Fp16, 6 * 32 * 2, 64 * 2)]
    public void BytesPerRoundTripFollowWhatIsSent(TapPlacement placement, ActivationType activation, long up, long down)
    {
        using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Parallel);
        var transport = new EdgeTransport(activation);
        var stepper = new PluginStepper(Model, plugin, CombinationMode.Parallel, transport, placement);
        Greedy(stepper, 10);
        Assert.Equal(up * transport.RoundTrips, transport.BytesUp);
        Assert.Equal(down * transport.RoundTrips, transport.BytesDown);
    }

    [Fact]
    public void ARoundTripBudgetHoldsMAtOrUnderIt()
    {
        using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Spa);
        var stepper = new PluginStepper(Model, plugin, CombinationMode.Spa, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new BudgetPolicy(0.2, 0.0));
        Greedy(stepper, 60);
        Assert.True(stepper.RoundTripsPerToken <= 0.2 + 1e-9, $"M = {stepper.RoundTripsPerToken}");
        Assert.True(stepper.RoundTripsPerToken > 0.1, $"the budget went unused: M = {stepper.RoundTripsPerToken}");
        int sent = 0;
        for (int i = 0; i < stepper.Decisions.Count; i++)
        {
            if (stepper.Decisions[i].Sent) sent++;
            Assert.True(sent <= 0.2 * (i + 1) + 1e-9, $"after {i + 1} tokens {sent} were sent");
        }
    }

    [Theory]
    [InlineData(PluginKind.Ladder, CombinationMode.Spa)]
    [InlineData(PluginKind.Ladder, CombinationMode.Parallel)]
    [InlineData(PluginKind.Lora, CombinationMode.Parallel)]
    public void UnderBeamSearchOneRoundTripCarriesEveryBeamOfAStep(PluginKind kind, CombinationMode mode)
    {
        using var plugin = RandomPlugin(kind, mode);
        var transport = new EdgeTransport(ActivationType.Fp32);
        var stepper = new PluginStepper(Model, plugin, mode, transport, gatePolicy: () => new ThresholdPolicy(0.5));
        var watched = new WatchedStepper(stepper);
        var result = new BeamSearch(new Generator(watched)).Run(Prompt, 30, width: 4, lengthPenalty: 1.0);

        // Every step of the beam search is one output position, however many beams it carries.
        Assert.Equal(watched.Steps.Count, stepper.Tokens);
        Assert.True(watched.Steps.Count >= result.Tokens.Count, $"{watched.Steps.Count} steps for {result.Tokens.Count} output tokens");
        Assert.Contains(watched.Steps, s => s.Rows > 1);
        long expected = kind == PluginKind.Lora
            ? Config.Layers * watched.Steps.Count
            : watched.Steps.Count(s => s.Sent > 0);
        Assert.Equal(expected, transport.RoundTrips);
        Assert.Equal((double)expected / watched.Steps.Count, stepper.RoundTripsPerToken, 12);
        if (kind == PluginKind.Ladder)
        {
            // Bytes follow the beams: the taps of every beam that asked go up, its out comes down.
            long rowsSent = watched.Steps.Sum(s => s.Sent);
            Assert.Equal(rowsSent * (Config.Layers + 1) * Config.Dim * 4, transport.BytesUp);
            Assert.Equal(rowsSent * Config.Dim * 4, transport.BytesDown);
        }
        if (mode == CombinationMode.Spa) Assert.InRange(expected, 1, watched.Steps.Count - 1); // the gate sends some steps and keeps others
    }

    [Fact]
    public void ARoundTripBudgetHoldsAlongEveryBeam()
    {
        using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Spa);
        const double budget = 0.3;
        var stepper = new PluginStepper(Model, plugin, CombinationMode.Spa, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new BudgetPolicy(budget, 0.0));
        var watched = new WatchedStepper(stepper);
        new BeamSearch(new Generator(watched)).Run(Prompt, 40, width: 4, lengthPenalty: 1.0);

        Assert.Contains(watched.Histories, h => h.Count > 10 && h.Contains(true));
        foreach (var history in watched.Histories)
        {
            int sent = 0;
            for (int i = 0; i < history.Count; i++)
            {
                if (history[i]) sent++;
                Assert.True(sent <= budget * (i + 1) + 1e-9, $"a beam sent {sent} of its first {i + 1} tokens");
            }
        }
    }

    [Fact]
    public void AForkedSequenceContinuesItsParentsBudget()
    {
        // Budget 0.5 and a gate that always wants the device: a sequence sends its 2nd, 4th, ... token. After three
        // tokens (the 2nd sent), a copy of the sequence owes nothing and sends its 4th; a fresh one would not send its 1st.
        using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Spa);
        using (no_grad())
        {
            plugin.Gate!.NamedParametersOf("classifier.weight").zero_();
            plugin.Gate!.NamedParametersOf("classifier.bias").copy_(tensor(new[] { -20f, 20f })); // p = 1 at every token
        }
        var stepper = new PluginStepper(Model, plugin, CombinationMode.Spa, new EdgeTransport(ActivationType.Fp32), gatePolicy: () => new BudgetPolicy(0.5, 0.0));
        using var cache = Model.CreateCache(3, 64);
        using (stepper.Step(cache, [0], [Prompt])) { }
        using (stepper.Step(cache, [0], [[403]])) { }
        using (stepper.Step(cache, [0], [[407]])) { }
        Assert.Equal([false, true, false], stepper.History(cache, 0));
        cache.CopySlot(0, 2);
        using (stepper.Step(cache, [0, 2], [[261], [378]])) { }
        using (stepper.Step(cache, [1], [Prompt])) { }
        Assert.Equal([false, true, false, true], stepper.History(cache, 0));
        Assert.Equal([false, true, false, true], stepper.History(cache, 2));
        Assert.Equal([false], stepper.History(cache, 1));
        // One request: the parent and its copy asked in the same step, so that step made one round trip.
        Assert.Equal(2, stepper.Transport.RoundTrips);
        Assert.Equal(5, stepper.Tokens);
    }

    /// <summary>Forwards each step to a plugin stepper and notes its rows, the rows it sent, and each stepped sequence's history.</summary>
    private sealed class WatchedStepper(PluginStepper inner) : ITokenStepper
    {
        public LlamaModel Model => inner.Model;
        public List<(int Rows, int Sent)> Steps { get; } = [];
        public List<IReadOnlyList<bool>> Histories { get; } = [];

        public Tensor Step(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens)
        {
            int decisions = inner.Decisions.Count;
            long bytes = inner.Transport.BytesDown;
            var logits = inner.Step(cache, slots, newTokens);
            int sent = inner.Decisions.Count > decisions
                ? inner.Decisions.Skip(decisions).Count(d => d.Sent)
                : (int)((inner.Transport.BytesDown - bytes) / (Model.Config.Dim * 4)); // no gate: every row asked
            Steps.Add((slots.Count, sent));
            foreach (var slot in slots) Histories.Add([.. inner.History(cache, slot)]);
            return logits;
        }
    }

    [Theory]
    [InlineData(PluginKind.Ladder, CombinationMode.Spa)]
    [InlineData(PluginKind.Lora, CombinationMode.Parallel)]
    [InlineData(PluginKind.Adapter, CombinationMode.Parallel)]
    public void ASavedPluginLoadsBackIdentical(PluginKind kind, CombinationMode mode)
    {
        var directory = TempDirectory();
        try
        {
            using var plugin = RandomPlugin(kind, mode);
            plugin.Save(directory);
            using var loaded = PersonalPlugin.Load(directory, Model);
            Assert.Equal(plugin.Kind, loaded.Kind);
            Assert.Equal(plugin.Mode, loaded.Mode);
            Assert.Equal(plugin.Dimensions, loaded.Dimensions);
            var original = plugin.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
            foreach (var (name, parameter) in loaded.NamedParameters())
                Assert.True(original[name].bytes.SequenceEqual(parameter.bytes), name);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void DimensionsAreSavedInSnakeCaseAndAnOlderManifestWithoutLstReductionGetsTheDefault()
    {
        var dimensions = new PluginDimensions(SideDim: 32, AdapterDim: 64, LoraRank: 9, LoraAlpha: 18, AdapterBottleneck: 70, LstReduction: 4);
        var json = JsonSerializer.Serialize(dimensions, PluginManifest.Json);
        Assert.Contains("\"lst_reduction\": 4", json);
        Assert.Equal(dimensions, JsonSerializer.Deserialize<PluginDimensions>(json, PluginManifest.Json));

        const string older = """{ "side_dim": 32, "adapter_dim": 64, "lora_rank": 9, "lora_alpha": 18, "adapter_bottleneck": 70 }""";
        var loaded = JsonSerializer.Deserialize<PluginDimensions>(older, PluginManifest.Json);
        Assert.Equal(dimensions with { LstReduction = PluginDimensions.DefaultLstReduction }, loaded);
        Assert.Equal(8, loaded!.LstReduction);
    }

    [Fact]
    public void APluginSavedBeforeLstReductionExistedStillLoads()
    {
        var directory = TempDirectory();
        try
        {
            using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Spa);
            plugin.Save(directory);
            var manifestPath = Path.Combine(directory, PluginManifest.FileName);
            var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!;
            Assert.True(manifest["dimensions"]!.AsObject().Remove("lst_reduction"));
            File.WriteAllText(manifestPath, manifest.ToJsonString());
            using var loaded = PersonalPlugin.Load(directory, Model);
            Assert.Equal(plugin.Dimensions, loaded.Dimensions);
            Assert.Equal(PluginDimensions.DefaultLstReduction, loaded.Dimensions.LstReduction);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void BadPluginFilesAreRefusedWithClearErrors()
    {
        var directory = TempDirectory();
        try
        {
            using var plugin = RandomPlugin(PluginKind.Ladder, CombinationMode.Spa);
            plugin.Save(directory);
            var manifestPath = Path.Combine(directory, PluginManifest.FileName);
            var manifest = File.ReadAllText(manifestPath);

            File.WriteAllText(manifestPath, manifest.Replace(Model.Identity, "sha256:0000"));
            Assert.Contains("another base model", Assert.Throws<InvalidDataException>(() => PersonalPlugin.Load(directory, Model)).Message);

            File.WriteAllText(manifestPath, manifest.Replace("\"side_dim\": 32", "\"side_dim\": 16"));
            Assert.Contains("shape", Assert.Throws<InvalidDataException>(() => PersonalPlugin.Load(directory, Model)).Message);

            File.WriteAllText(manifestPath, manifest.Replace("\"side_dim\": 32", "\"side_dim\": 0"));
            Assert.Contains("SideDim must be positive", Assert.Throws<InvalidDataException>(() => PersonalPlugin.Load(directory, Model)).Message);

            File.WriteAllText(manifestPath, "{ not json");
            Assert.Contains("not a valid plugin manifest", Assert.Throws<InvalidDataException>(() => PersonalPlugin.Load(directory, Model)).Message);

            File.WriteAllText(manifestPath, manifest);
            using (no_grad()) plugin.Side!.NamedParametersOf("output.weight").fill_(float.NaN);
            plugin.Save(directory);
            Assert.Contains("NaN", Assert.Throws<InvalidDataException>(() => PersonalPlugin.Load(directory, Model)).Message, StringComparison.OrdinalIgnoreCase);

            File.Delete(Path.Combine(directory, PluginManifest.WeightsFileName));
            Assert.Throws<FileNotFoundException>(() => PersonalPlugin.Load(directory, Model));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Theory]
    [InlineData(PluginKind.Ladder, CombinationMode.Parallel, GateObjective.Joint)]
    [InlineData(PluginKind.Ladder, CombinationMode.Spa, GateObjective.Joint)]
    [InlineData(PluginKind.Ladder, CombinationMode.Spa, GateObjective.TwoStage)]
    [InlineData(PluginKind.Lora, CombinationMode.Parallel, GateObjective.Joint)]
    public void TrainingForAFewStepsLowersTheLossItOptimises(PluginKind kind, CombinationMode mode, GateObjective objective)
    {
        using var plugin = PersonalPlugin.Create(Model, kind, mode, PluginDimensions.For(Config), seed: 5);
        var data = Enumerable.Range(0, 16).Select(i => new TrainingSequence([1, 403, 407, 261, 378, 11, 20 + i % 4, 30, 40, 50, 60], 1)).ToArray();
        var options = new TrainingOptions { Epochs = 4, BatchSize = 8, LearningRate = 1e-2, GateObjective = objective, WordStarts = Stories260K.WordStarts };
        var trainer = new PluginTrainer(Model, plugin, options);
        // What each stage optimises: the plugin in its mode; the joint mixture; or, two-stage, parallel and then the gate.
        (CombinationMode Mode, LossKind Kind)[] objectives = (mode, objective) switch
        {
            (CombinationMode.Spa, GateObjective.Joint) => [(CombinationMode.Spa, LossKind.JointGate)],
            (CombinationMode.Spa, _) => [(CombinationMode.Parallel, LossKind.Plugin), (CombinationMode.Parallel, LossKind.GateOnly)],
            _ => [(mode, LossKind.Plugin)],
        };
        var before = objectives.Select(o => trainer.Evaluate(data, o.Mode, o.Kind)).ToArray();
        var report = trainer.Train(data, data);
        var after = objectives.Select(o => trainer.Evaluate(data, o.Mode, o.Kind)).ToArray();
        for (int i = 0; i < objectives.Length; i++)
            Assert.True(after[i] < before[i] - 0.05, $"{objectives[i].Kind} loss {before[i]} -> {after[i]}");
        Assert.True(report.Steps > 0);
    }

    [Fact]
    public void ANonFiniteLossStopsTrainingAndKeepsTheLastGoodCheckpoint()
    {
        var directory = TempDirectory();
        try
        {
            using var plugin = PersonalPlugin.Create(Model, PluginKind.Ladder, CombinationMode.Parallel, PluginDimensions.For(Config), seed: 2);
            var data = Enumerable.Range(0, 8).Select(i => new TrainingSequence([1, 403, 407, 261, 378, 11, 20 + i], 1)).ToArray();
            var trainer = new PluginTrainer(Model, plugin, new TrainingOptions { Epochs = 1, BatchSize = 4 });
            trainer.Train(data, data, directory);
            var good = File.ReadAllBytes(Path.Combine(directory, PluginManifest.WeightsFileName));

            using (no_grad()) plugin.Side!.NamedParametersOf("output.weight").fill_(float.PositiveInfinity);
            var error = Assert.Throws<TrainingDivergedException>(() => new PluginTrainer(Model, plugin, new TrainingOptions { Epochs = 1, BatchSize = 4 }).Train(data, data, directory));
            Assert.Contains("the loss became", error.Message);
            Assert.Contains(directory, error.Message);
            Assert.Equal(good, File.ReadAllBytes(Path.Combine(directory, PluginManifest.WeightsFileName)));
            using var kept = PersonalPlugin.Load(directory, Model);
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    private static List<int> Greedy(ITokenStepper stepper, int tokens) =>
        new Generator(stepper).Decode(Prompt, tokens, SamplingOptions.Greedy).Select(t => t.Id).ToList();

    private static Tensor MatVec(Tensor matrix, Tensor vector) => matrix.matmul(vector);

    private static string TempDirectory() => Path.Combine(Path.GetTempPath(), "spa-plugin-" + Guid.NewGuid().ToString("N"));
}

internal static class ModuleExtensions
{
    public static Tensor NamedParametersOf(this nn.Module module, string name) => module.named_parameters().Single(p => p.name == name).parameter;
}
