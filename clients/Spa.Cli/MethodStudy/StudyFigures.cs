using Spa.Model.Evaluation;
using Spa.Model.Plugins;

namespace Spa.Cli.MethodStudy;

/// <summary>One plugin a drawn user trains: its name in the study, the mode it is trained for, its gate and its size.</summary>
/// <param name="Objective">The gate's training objective (two-stage or joint); ignored without a gate.</param>
/// <param name="SideDim">Ladder width, or null for the default.</param>
/// <param name="AdapterDim">Width of the ladder's adapters, or null for the default (d).</param>
public sealed record StudyPlugin(string Name, string About, CombinationMode Mode, GateSettings? Gate, int? SideDim = null, int? AdapterDim = null,
    PluginKind Kind = PluginKind.Ladder)
{
    public bool Gated => Gate is not null;

    /// <summary>The plugins of Table 3 and the gate variants, all trained on the same stories of every user.</summary>
    public static IReadOnlyList<StudyPlugin> All { get; } =
    [
        new("side", "S3 / LST: the side network alone", CombinationMode.Side, null),
        new("parallel", "S1: full integration, every token", CombinationMode.Parallel, null),
        new("switch", "S2: the gate picks the side network alone or the base", CombinationMode.Switch, GateSettings.Default),
        new("spa", "SPA, the default gate: n and the token, word labels", CombinationMode.Spa, GateSettings.Default),
        new("spa-hidden-word", "gate reads n only, word labels", CombinationMode.Spa, GateSettings.Default with { Input = GateInput.Hidden }),
        new("spa-token-label", "gate reads n and the token, token labels", CombinationMode.Spa, GateSettings.Default with { Label = GateLabel.Token }),
        new("spa-design", "the design's gate: n only, token labels", CombinationMode.Spa, GateSettings.Default with { Input = GateInput.Hidden, Label = GateLabel.Token }),
        new("spa-joint", "joint objective (lambda 0.05), gate reads n and the token", CombinationMode.Spa, GateSettings.Default with { Objective = GateObjective.Joint }),
        new("spa-small", "the default gate on a ladder of width 1 with adapters of width 1 (the paper's share of the base)", CombinationMode.Spa, GateSettings.Default, SideDim: 1, AdapterDim: 1),
        new("lora", "LoRA on q and v of every layer, the ladder's capacity, split: L round trips a token", CombinationMode.Parallel, null, Kind: PluginKind.Lora),
        new("adapter", "Houlsby adapters in every layer, the ladder's capacity, split: 2L round trips a token", CombinationMode.Parallel, null, Kind: PluginKind.Adapter),
    ];

    /// <summary>What the data-size sweep trains at every size.</summary>
    public static IReadOnlyList<StudyPlugin> SizeSweep { get; } = [All.Single(p => p.Name == "parallel"), All.Single(p => p.Name == "spa")];
}

/// <summary>A plugin's teacher-forced figures on a user's test stories, in one mode.</summary>
/// <param name="QualityShare">Private-token accuracy as a share of the parallel plugin's (of its own parallel mode for
/// plugins of another size).</param>
/// <param name="NeededRecall">Among private positions the plugin predicts right and the base alone wrong, the share the
/// gate sent: its recall where the device is needed.</param>
/// <param name="DiffRate">The paper's "diff rate": positions where the always-asking mode's prediction differs from the base's.</param>
/// <param name="DiffPickRate">The paper's "diff pick rate": among those, the share the gate sent to the device.</param>
public sealed record TeacherForcedFigures(
    string Plugin, string Mode, double PrivateAccuracy, double TokenAccuracy, double QualityShare, double M,
    double? GateRecall, double? GatePrecision, double? NeededRecall, double? DiffRate, double? DiffPickRate, double? Tau,
    double? HeldOutQuality, double? HeldOutM, double BytesUpPerToken, double BytesDownPerToken, double ParametersPercent);

/// <summary>One tau of a gated plugin's sweep on the test stories.</summary>
public sealed record CurvePoint(double Tau, double M, double QualityShare, double GateRecall);

/// <summary>Free-running generation from prompts cut before a private name, for a plugin in a mode.</summary>
public sealed record FreeRunningFigures(string Plugin, string Mode, NameCompletionResult Result);

/// <summary>A plugin trained on the first <paramref name="Stories"/> stories of the user's corpus, on the common test stories.</summary>
public sealed record SizeFigures(int Stories, int TrainingStories, string Plugin, double PrivateAccuracy, double QualityShare, double M, double? GateRecall);

/// <summary>Everything measured for one drawn user.</summary>
public sealed record UserFigures(
    int Seed, IReadOnlyList<string> Names, int Stories, int TestStories, long TestPositions, double PrivateShare,
    IReadOnlyList<TeacherForcedFigures> TeacherForced, IReadOnlyDictionary<string, IReadOnlyList<CurvePoint>> Curves,
    IReadOnlyList<FreeRunningFigures> FreeRunning, IReadOnlyList<SizeFigures> Sizes);

/// <summary>
/// The settings of a study and the plugins it trains; a user's cached figures are reused only under the same settings
/// and plugins (a plugin already trained is reused from its directory either way).
/// </summary>
/// <param name="MBudget">The round-trip budget to which the spa plugin's tau is also set on each user's validation
/// stories, for a second spa row beside the one at the target quality.</param>
public sealed record StudySettings(string Model, int Stories, IReadOnlyList<int> Sizes, int Epochs, int Generate, int Prompts, double TargetQuality,
    double MBudget, IReadOnlyList<string> Plugins)
{
    public int CorpusSize => Math.Max(Stories, Sizes.DefaultIfEmpty(Stories).Max());

    public bool SameAs(StudySettings other) =>
        Model == other.Model && Stories == other.Stories && Sizes.SequenceEqual(other.Sizes) && Epochs == other.Epochs
        && Generate == other.Generate && Prompts == other.Prompts && TargetQuality == other.TargetQuality && MBudget == other.MBudget
        && (Plugins ?? []).SequenceEqual(other.Plugins ?? []); // null in a file written before the list was kept
}
