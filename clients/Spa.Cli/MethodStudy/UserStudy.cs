using System.Text.Json;
using Spa.Cli.Commands;
using Spa.CommandLine;
using Spa.Model;
using Spa.Model.Evaluation;
using Spa.Model.Latency;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;
using Spa.Model.Training;

namespace Spa.Cli.MethodStudy;

/// <summary>
/// One drawn user of the method study: draws the user's private names from its seed, writes the user's corpus, trains
/// every <see cref="StudyPlugin"/> on its first <see cref="StudySettings.Stories"/> stories (each plugin's tau set on the
/// user's own validation stories), and measures them on the test stories of the whole corpus: teacher-forced, over a
/// sweep of tau, and generating from prompts cut before a name. The corpus, the plugins and the figures are kept in the
/// user's directory, so that a study that stops resumes where it stopped.
/// </summary>
public sealed class UserStudy(LlamaModel model, ITokenizer tokenizer, StudySettings settings, string directory, int seed, string label)
{
    private const string FiguresFile = "figures.json";
    private static readonly double[] TauGrid = [0.001, 0.005, .. Enumerable.Range(1, 99).Select(i => i / 100.0), 0.995, 0.999];

    public UserFigures Run(CancellationToken cancellation)
    {
        Directory.CreateDirectory(directory);
        var figuresPath = Path.Combine(directory, FiguresFile);
        if (File.Exists(figuresPath))
        {
            var cached = JsonSerializer.Deserialize<CachedFigures>(File.ReadAllText(figuresPath), StudyJson.Options);
            if (cached is not null && cached.Settings.SameAs(settings))
            {
                Console.Error.WriteLine($"{label}figures of an earlier run under the same settings reused from {figuresPath}");
                return cached.Figures;
            }
        }

        var names = RandomNames.Draw(3, seed, tokenizer);
        var corpus = Corpus(names, cancellation);
        var test = TaskArguments.Split(corpus, TaskSplit.Test);
        var testSequences = TeacherForcedPositions.FromStories(test, tokenizer);
        long testPositions = testSequences.Sum(s => Math.Min(s.Tokens.Length, model.Config.MaxSeqLen) - 1);
        double privateShare = (double)testSequences.Sum(s => s.Scored!.Take(model.Config.MaxSeqLen).Count(p => p)) / testPositions;

        var teacherForced = new List<TeacherForcedFigures>();
        var curves = new Dictionary<string, IReadOnlyList<CurvePoint>>();
        var basePositions = TeacherForcedPositions.Measure(model, null, CombinationMode.Base, testSequences, cancellation: cancellation);
        var baseMetrics = basePositions.Score(new bool[basePositions.Count]);
        double parallelAccuracy = double.NaN;
        var plugins = new Dictionary<string, PersonalPlugin>();
        try
        {
            foreach (var recipe in StudyPlugin.All)
                plugins[recipe.Name] = Train(recipe, corpus, settings.Stories, cancellation);
            // The parallel plugin first: every other plugin's quality is a share of its accuracy.
            foreach (var recipe in StudyPlugin.All.OrderBy(r => r.Name != "parallel"))
            {
                var plugin = plugins[recipe.Name];
                var always = PersonalEvaluator.AlwaysAsking(recipe.Mode);
                var positions = TeacherForcedPositions.Measure(model, plugin, always, testSequences, cancellation: cancellation);
                var alwaysAccuracy = positions.Score(Enumerable.Repeat(true, positions.Count).ToArray()).PrivateAccuracy;
                if (recipe.Name == "parallel") parallelAccuracy = alwaysAccuracy;
                // Plugins of the default size compare with the parallel plugin; another size with its own parallel mode.
                double reference = recipe.SideDim is null ? parallelAccuracy : alwaysAccuracy;
                if (recipe.Mode == CombinationMode.Spa && recipe.SideDim is not null)
                    teacherForced.Add(Figures(recipe.Name, plugin, always, positions, Enumerable.Repeat(true, positions.Count).ToArray(), reference));
                var edge = recipe.Gated ? positions.Decide(() => new ThresholdPolicy(plugin.GateSettings!.Tau)) : Enumerable.Repeat(true, positions.Count).ToArray();
                teacherForced.Add(Figures(recipe.Name, plugin, recipe.Mode, positions, edge, reference));
                if (recipe.Gated) curves[recipe.Name] = Curve(positions, reference);
                if (recipe.Name == "spa")
                {
                    // The same plugin with its tau set on the user's validation stories to a round-trip budget instead.
                    var (_, validation) = TaskArguments.PersonalTrainingData(corpus.Take(settings.Stories).ToArray(), tokenizer, model.Config.MaxSeqLen);
                    var heldOut = TeacherForcedPositions.Measure(model, plugin, always, validation, cancellation: cancellation);
                    var (tau, calibration) = TauCalibrator.ForBudget(heldOut, settings.MBudget);
                    using var budgeted = PersonalPlugin.Load(Path.Combine(directory, $"{recipe.Name}-{settings.Stories}"), model);
                    budgeted.GateSettings = budgeted.GateSettings! with { Tau = tau, Calibration = calibration };
                    teacherForced.Add(Figures($"spa@m<={settings.MBudget:0.##}", budgeted, recipe.Mode, positions, positions.Decide(() => new ThresholdPolicy(tau)), reference));
                }
            }
            teacherForced.Insert(0, new TeacherForcedFigures("-", "base", 100 * baseMetrics.PrivateAccuracy, 100 * baseMetrics.Accuracy,
                baseMetrics.PrivateAccuracy / parallelAccuracy, 0, null, null, null, null, null, null, null, null, 0, 0, 0));

            var freeRunning = FreeRunning(test, plugins, cancellation);
            var sizes = Sizes(corpus, testSequences, plugins, cancellation);
            var figures = new UserFigures(seed, names, corpus.Count, test.Count, testPositions, privateShare, teacherForced, curves, freeRunning, sizes);
            File.WriteAllText(figuresPath, JsonSerializer.Serialize(new CachedFigures(settings, figures), StudyJson.Options));
            return figures;
        }
        finally
        {
            foreach (var plugin in plugins.Values) plugin.Dispose();
        }
    }

    private sealed record CachedFigures(StudySettings Settings, UserFigures Figures);

    private IReadOnlyList<PersonalStory> Corpus(IReadOnlyList<string> names, CancellationToken cancellation)
    {
        var path = Path.Combine(directory, "corpus.jsonl");
        if (File.Exists(path))
        {
            var kept = PersonalCorpus.Load(path);
            if (kept.Count == settings.CorpusSize && kept[0].Names.All(names.Contains)) return kept;
        }
        using var line = new ProgressLine();
        var corpus = PersonalCorpus.Generate(model, tokenizer, names, settings.CorpusSize, seed, progress: new SynchronousProgress<int>(made =>
            line.Update($"{label}writing the corpus of {string.Join(", ", names)} {ProgressLine.Bar((double)made / settings.CorpusSize)} {made}/{settings.CorpusSize}")), cancellation: cancellation);
        var temporary = path + ".tmp";
        using (var writer = new StreamWriter(temporary)) PersonalCorpus.Write(writer, corpus);
        File.Move(temporary, path, overwrite: true);
        return corpus;
    }

    /// <summary>The plugin trained on the first <paramref name="stories"/> stories, from its directory when an earlier run trained it.</summary>
    private PersonalPlugin Train(StudyPlugin recipe, IReadOnlyList<PersonalStory> corpus, int stories, CancellationToken cancellation)
    {
        var pluginDirectory = Path.Combine(directory, $"{recipe.Name}-{stories}");
        if (File.Exists(Path.Combine(pluginDirectory, PluginManifest.FileName)))
        {
            var kept = PersonalPlugin.Load(pluginDirectory, model);
            if (kept.Training?.Epochs == settings.Epochs) return kept;
            kept.Dispose();
        }
        var gate = recipe.Gate ?? GateSettings.Default;
        var options = new TrainingOptions
        {
            Epochs = settings.Epochs,
            Seed = seed,
            GateObjective = gate.Objective,
            Lambda = gate.Lambda,
            Delta = gate.Delta,
            GateLabel = gate.Label,
            WordStarts = WordStarts.Of(tokenizer),
        };
        options.Validate();
        var (train, validation) = TaskArguments.PersonalTrainingData(corpus.Take(stories).ToArray(), tokenizer, Math.Min(model.Config.MaxSeqLen, options.MaxSequenceLength));
        var dimensions = PluginDimensions.For(model.Config, recipe.SideDim, ladderAdapterDim: recipe.AdapterDim);
        var plugin = PersonalPlugin.Create(model, recipe.Kind, recipe.Mode, dimensions, recipe.Gate, seed);
        try
        {
            if (Directory.Exists(pluginDirectory)) Directory.Delete(pluginDirectory, recursive: true);
            TrainCommand.TrainAndSave(model, plugin, options, TauChoice.From(null, settings.TargetQuality, null, settings.TargetQuality), TaskArguments.Personal,
                train, validation, pluginDirectory, resume: false, $"{label}{recipe.Name} on {stories} stories: ", cancellation);
            return plugin;
        }
        catch
        {
            plugin.Dispose();
            throw;
        }
    }

    private TeacherForcedFigures Figures(string name, PersonalPlugin plugin, CombinationMode mode, TeacherForcedPositions positions, bool[] edge, double reference)
    {
        var metrics = positions.Score(edge);
        bool gated = mode is CombinationMode.Switch or CombinationMode.Spa;
        int needed = 0, neededSent = 0, differ = 0, differSent = 0;
        for (int i = 0; i < positions.Count; i++)
        {
            bool pluginRight = positions.PluginPrediction[i] == positions.Target[i], baseRight = positions.BasePrediction[i] == positions.Target[i];
            if (positions.Scored[i] && pluginRight && !baseRight)
            {
                needed++;
                if (edge[i]) neededSent++;
            }
            if (positions.PluginPrediction[i] != positions.BasePrediction[i])
            {
                differ++;
                if (edge[i]) differSent++;
            }
        }
        // A plugin inside the base calls the device in every layer it acts in, whatever the token.
        double m = plugin.Hook is null ? metrics.M : PluginTraffic.FixedRoundTripsPerToken(model.Config, plugin.Kind);
        var traffic = PluginTraffic.For(model.Config, plugin.Kind, plugin.Dimensions, TapPlacement.Edge, ActivationType.Fp32, roundTripsPerToken: m);
        var calibration = plugin.GateSettings?.Calibration;
        return new TeacherForcedFigures(name, PluginNames.Name(mode), 100 * metrics.PrivateAccuracy, 100 * metrics.Accuracy, metrics.PrivateAccuracy / reference, m,
            gated ? metrics.GateRecall : null, gated ? metrics.GatePrecision : null, gated ? (double)neededSent / needed : null,
            (double)differ / positions.Count, gated ? (double)differSent / differ : null, gated ? plugin.GateSettings!.Tau : null,
            gated ? calibration?.Quality : null, gated ? calibration?.M : null,
            m * traffic.BytesUp, m * traffic.BytesDown, 100.0 * plugin.DeviceParameterCount / model.ParameterCount);
    }

    private static IReadOnlyList<CurvePoint> Curve(TeacherForcedPositions positions, double reference) =>
        TauGrid.Select(tau =>
        {
            var metrics = positions.Score(positions.Decide(() => new ThresholdPolicy(tau)));
            return new CurvePoint(tau, metrics.M, metrics.PrivateAccuracy / reference, metrics.GateRecall);
        }).ToArray();

    private IReadOnlyList<FreeRunningFigures> FreeRunning(IReadOnlyList<PersonalStory> test, Dictionary<string, PersonalPlugin> plugins, CancellationToken cancellation)
    {
        var evaluator = new NameCompletionEvaluator(model, tokenizer);
        var prompts = evaluator.Prompts(test, settings.Generate, settings.Prompts);
        var settingsFor = new EvaluationSettings();
        (string Plugin, CombinationMode Mode)[] runs =
        [
            ("-", CombinationMode.Base), ("side", CombinationMode.Side), ("parallel", CombinationMode.Parallel),
            ("switch", CombinationMode.Switch), ("spa", CombinationMode.Spa),
        ];
        return runs.Select(run =>
        {
            var plugin = run.Mode == CombinationMode.Base ? null : plugins[run.Plugin];
            var result = evaluator.Evaluate(prompts, plugin, run.Mode, settingsFor, settings.Generate, cancellation);
            Console.Error.WriteLine($"{label}free-running {PluginNames.Name(run.Mode)}: name start {100 * result.NameStartAccuracy:F1}%, whole name {100 * result.WholeNameExactMatch:F1}%, M {result.M:F3} over {result.GeneratedTokens} tokens");
            return new FreeRunningFigures(run.Plugin, PluginNames.Name(run.Mode), result);
        }).ToArray();
    }

    private IReadOnlyList<SizeFigures> Sizes(IReadOnlyList<PersonalStory> corpus, IReadOnlyList<TrainingSequence> test, Dictionary<string, PersonalPlugin> trained, CancellationToken cancellation)
    {
        var figures = new List<SizeFigures>();
        foreach (int size in settings.Sizes)
        {
            int trainingStories = TaskArguments.Split(corpus.Take(size).ToArray(), TaskSplit.Train).Count;
            double parallelAccuracy = double.NaN;
            foreach (var recipe in StudyPlugin.SizeSweep)
            {
                bool owned = size != settings.Stories;
                var plugin = owned ? Train(recipe, corpus, size, cancellation) : trained[recipe.Name];
                try
                {
                    var positions = TeacherForcedPositions.Measure(model, plugin, PersonalEvaluator.AlwaysAsking(recipe.Mode), test, cancellation: cancellation);
                    var edge = recipe.Gated ? positions.Decide(() => new ThresholdPolicy(plugin.GateSettings!.Tau)) : Enumerable.Repeat(true, positions.Count).ToArray();
                    var metrics = positions.Score(edge);
                    if (!recipe.Gated) parallelAccuracy = metrics.PrivateAccuracy;
                    figures.Add(new SizeFigures(size, trainingStories, recipe.Name, 100 * metrics.PrivateAccuracy, metrics.PrivateAccuracy / parallelAccuracy, metrics.M,
                        recipe.Gated ? metrics.GateRecall : null));
                }
                finally
                {
                    if (owned) plugin.Dispose();
                }
            }
        }
        return figures;
    }
}
