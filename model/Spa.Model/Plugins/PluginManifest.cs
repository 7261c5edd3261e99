using System.Text.Json;
using System.Text.Json.Serialization;

namespace Spa.Model.Plugins;

/// <summary>
/// The gate: its training objective and settings, what it reads, how its two-stage labels were drawn, its threshold and,
/// when the threshold was set on held-out data, how. A manifest written before the gate read the token or labelled
/// words reads as <see cref="GateInput.Hidden"/> and <see cref="GateLabel.Token"/>, which is what those gates were.
/// </summary>
public sealed record GateSettings(GateObjective Objective, double Lambda, double Tau, double Delta)
{
    public GateInput Input { get; init; } = GateInput.Hidden;
    public GateLabel Label { get; init; } = GateLabel.Token;
    public TauCalibration? Calibration { get; init; }

    /// <summary>What a new plugin's gate is unless told otherwise: two-stage, reading the token, labelling words.</summary>
    public static GateSettings Default { get; } = new(GateObjective.TwoStage, 0.05, 0.5, 1.0) { Input = GateInput.HiddenAndToken, Label = GateLabel.Word };
}

/// <summary>
/// How a plugin's tau was set on the held-out part of its user's data: the target (a share of the always-asking mode's
/// quality, or a round-trip budget) and what that tau gave on the held-out positions.
/// </summary>
/// <param name="Target">"quality" or "m-budget".</param>
/// <param name="Value">The share of quality (0..1) or the budget of round trips per token.</param>
/// <param name="Quality">The gated mode's score on the held-out positions as a share of the always-asking mode's.</param>
/// <param name="M">Round trips per token on the held-out positions.</param>
/// <param name="Positions">Held-out positions the quality was counted on.</param>
public sealed record TauCalibration(string Target, double Value, double Quality, double M, long Positions);

/// <summary>What training produced; a validation loss is null when there was no validation split.</summary>
public sealed record TrainingRecord(string Task, int Epochs, int Steps, long Tokens, double FinalLoss, double? ValidationLoss, int Seed);

/// <summary>plugin.json: everything needed to rebuild a plugin and to refuse it on the wrong base.</summary>
public sealed record PluginManifest(
    string Format,
    string Kind,
    string Mode,
    string BaseIdentity,
    int BaseDim,
    int BaseLayers,
    int BaseVocab,
    PluginDimensions Dimensions,
    GateSettings? Gate,
    IReadOnlyDictionary<string, long[]> Tensors,
    TrainingRecord? Training)
{
    public const string CurrentFormat = "spa-plugin/1";
    public const string FileName = "plugin.json";
    public const string WeightsFileName = "plugin.safetensors";

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) }, // values as the command line spells them
    };
}
