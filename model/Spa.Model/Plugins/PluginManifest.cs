using System.Text.Json;
using System.Text.Json.Serialization;

namespace Spa.Model.Plugins;

/// <summary>The gate's training objective and its settings.</summary>
public sealed record GateSettings(string Objective, double Lambda, double Tau, double Delta);

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
    };
}
