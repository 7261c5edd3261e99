using System.Text.Json;
using Spa.Model.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// A user's private plugin for one base model: the side network (ladder, LST) or the in-base networks (LoRA, adapters),
/// the gate where the mode has one, and the manifest that ties them to their base. Saved as plugin.json plus
/// plugin.safetensors; loading checks the base's identity, every shape and every value before anything runs.
/// </summary>
public sealed class PersonalPlugin : IDisposable
{
    private PersonalPlugin(PluginKind kind, CombinationMode mode, PluginDimensions dimensions, PluginBase model, GateSettings? gate)
    {
        Kind = kind;
        Mode = mode;
        Dimensions = dimensions;
        BaseIdentity = model.Identity;
        (DType, Device) = (model.DType, model.Device);
        GateSettings = gate;
        var c = model.Config;
        (BaseDim, BaseLayers, BaseVocab) = (c.Dim, c.Layers, c.VocabSize);
        switch (kind)
        {
            case PluginKind.Ladder:
                Side = new LadderSideNetwork(c.Dim, c.Layers, dimensions.SideDim, dimensions.AdapterDim);
                break;
            case PluginKind.Lst:
                Lst = new LstSideNetwork(c, dimensions.LstDimFor(c), dimensions.LstHiddenDimFor(c));
                break;
            case PluginKind.Lora:
                Lora = new LoraPlugin(c, dimensions.LoraRank, dimensions.LoraAlpha);
                break;
            case PluginKind.Adapter:
                Adapter = new AdapterPlugin(c, dimensions.AdapterBottleneck);
                break;
            default:
                throw new ArgumentException($"plugin kind '{PluginNames.Name(kind)}' is not supported: use ladder, lst, lora or adapter");
        }
        if (mode is CombinationMode.Switch or CombinationMode.Spa) Gate = new Gate(c.Dim, gate?.Input ?? GateInput.Hidden);
        foreach (var (_, p) in NamedParameters()) p.requires_grad = false;
        foreach (var module in Modules()) module.to(model.DType).to(model.Device);
    }

    public PluginKind Kind { get; }

    /// <summary>The mode the plugin was trained for; it can be evaluated in any mode its kind allows.</summary>
    public CombinationMode Mode { get; }

    public PluginDimensions Dimensions { get; }
    public string BaseIdentity { get; }

    /// <summary>Where the plugin's tensors live: the base's dtype and device.</summary>
    public ScalarType DType { get; }

    public Device Device { get; }
    public int BaseDim { get; }
    public int BaseLayers { get; }
    public int BaseVocab { get; }
    public GateSettings? GateSettings { get; set; }
    public TrainingRecord? Training { get; set; }

    public LadderSideNetwork? Side { get; }
    public LstSideNetwork? Lst { get; }
    public Gate? Gate { get; }
    public LoraPlugin? Lora { get; }
    public AdapterPlugin? Adapter { get; }

    /// <summary>The in-base hook of a LoRA or adapter plugin; null for side networks.</summary>
    public ILayerHook? Hook => (ILayerHook?)Lora ?? Adapter;

    /// <summary>True for plugins that read the base's taps from outside (ladder, LST), false for plugins inside the base.</summary>
    public bool IsSideNetwork => Side is not null || Lst is not null;

    public static PersonalPlugin Create(LlamaModel model, PluginKind kind, CombinationMode mode, PluginDimensions dimensions, GateSettings? gate = null, int seed = 0)
    {
        CheckModeFits(kind, mode);
        // Initialisation draws from torch's one global generator: seeding and drawing must not interleave with another
        // thread's, or the same seed would not give the same plugin.
        lock (SeedLock)
        {
            torch.manual_seed(seed);
            return new PersonalPlugin(kind, mode, dimensions, PluginBase.Of(model), mode is CombinationMode.Switch or CombinationMode.Spa ? gate ?? GateSettings.Default : null);
        }
    }

    private static readonly Lock SeedLock = new();

    /// <summary>Throws a clear error when the kind cannot run in the mode.</summary>
    public static void CheckModeFits(PluginKind kind, CombinationMode mode)
    {
        bool inside = kind is PluginKind.Lora or PluginKind.Adapter;
        if (inside && mode is not (CombinationMode.Parallel or CombinationMode.Base))
            throw new ArgumentException($"a {PluginNames.Name(kind)} plugin sits inside the base: it runs in mode 'parallel' (or 'base' without it), not '{PluginNames.Name(mode)}'");
    }

    /// <summary>Every trainable tensor, named as in plugin.safetensors ("side.", "lst.", "gate.", "lora.", "adapter." prefixes).</summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> NamedParameters()
    {
        foreach (var (prefix, module) in PrefixedModules())
            foreach (var (name, parameter) in module.named_parameters())
                yield return ($"{prefix}.{name}", parameter);
    }

    /// <summary>Parameters the device holds (the gate stays in the cloud and is not counted).</summary>
    public long DeviceParameterCount => NamedParameters().Where(p => !p.Name.StartsWith("gate.")).Sum(p => p.Parameter.NumberOfElements);

    public void SetTraining(bool training)
    {
        foreach (var module in Modules()) module.train(training);
    }

    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var tensors = NamedParameters().ToDictionary(p => p.Name, p => (Tensor)p.Parameter);
        var manifest = new PluginManifest(PluginManifest.CurrentFormat, PluginNames.Name(Kind), PluginNames.Name(Mode), BaseIdentity,
            BaseDim, BaseLayers, BaseVocab, Dimensions, GateSettings,
            tensors.ToDictionary(t => t.Key, t => t.Value.shape), Training);
        var weights = Path.Combine(directory, PluginManifest.WeightsFileName);
        var json = Path.Combine(directory, PluginManifest.FileName);
        var text = JsonSerializer.Serialize(manifest, PluginManifest.Json); // first: a manifest that cannot be written leaves no file behind
        SafetensorsFile.Write(weights + ".tmp", tensors);
        File.WriteAllText(json + ".tmp", text);
        File.Move(weights + ".tmp", weights, overwrite: true);
        File.Move(json + ".tmp", json, overwrite: true);
    }

    /// <summary>Loads a plugin saved by <see cref="Save"/> for <paramref name="model"/>; every mismatch is a clear error.</summary>
    public static PersonalPlugin Load(string directory, LlamaModel model) => Load(directory, PluginBase.Of(model));

    /// <summary>
    /// Loads a plugin for a base known only by its description, as a device does: it holds the plugin, never the base's
    /// weights. Every mismatch is a clear error.
    /// </summary>
    public static PersonalPlugin Load(string directory, PluginBase model)
    {
        var json = Path.Combine(directory, PluginManifest.FileName);
        var weights = Path.Combine(directory, PluginManifest.WeightsFileName);
        if (!File.Exists(json)) throw new FileNotFoundException($"{directory} is not a plugin: {PluginManifest.FileName} is missing");
        if (!File.Exists(weights)) throw new FileNotFoundException($"{directory} is not a complete plugin: {PluginManifest.WeightsFileName} is missing");
        PluginManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<PluginManifest>(File.ReadAllText(json), PluginManifest.Json)
                ?? throw new InvalidDataException("empty manifest");
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            // ArgumentException: sizes PluginDimensions refuses, such as a zero width.
            throw new InvalidDataException($"{json}: not a valid plugin manifest ({e.Message})");
        }
        if (manifest.Format != PluginManifest.CurrentFormat)
            throw new InvalidDataException($"{json}: format '{manifest.Format}' is not '{PluginManifest.CurrentFormat}'");
        if (manifest.BaseIdentity != model.Identity)
            throw new InvalidDataException($"{directory} was trained on another base model ({manifest.BaseIdentity}); this base is {model.Identity}");
        if (manifest.Dimensions is null || manifest.Tensors is null)
            throw new InvalidDataException($"{json}: the manifest lacks its dimensions or tensor list");

        var plugin = new PersonalPlugin(PluginNames.ParseKind(manifest.Kind), PluginNames.ParseMode(manifest.Mode), manifest.Dimensions, model, manifest.Gate)
        {
            Training = manifest.Training,
        };
        try
        {
            using var file = SafetensorsFile.Open(weights);
            var expected = plugin.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
            var unexpected = file.Entries.Keys.Except(expected.Keys).ToList();
            if (unexpected.Count > 0) throw new InvalidDataException($"{weights} holds tensors this plugin does not have: {string.Join(", ", unexpected.Take(5))}");
            foreach (var (name, parameter) in expected)
            {
                if (!file.Entries.TryGetValue(name, out var entry)) throw new InvalidDataException($"{weights} lacks tensor '{name}'");
                if (!manifest.Tensors.TryGetValue(name, out var listed) || !listed.SequenceEqual(entry.Shape))
                    throw new InvalidDataException($"{json} lists tensor '{name}' with a shape that differs from the weights file");
                if (!entry.Shape.SequenceEqual(parameter.shape))
                    throw new InvalidDataException($"{weights}: tensor '{name}' has shape {TensorChecks.Format(entry.Shape)} but the manifest's dimensions need {TensorChecks.Format(parameter.shape)}");
                using var values = file.Read(name);
                TensorChecks.RequireFinite(values, name, weights);
                using (no_grad()) parameter.copy_(values);
            }
        }
        catch
        {
            plugin.Dispose();
            throw;
        }
        return plugin;
    }

    private IEnumerable<(string Prefix, nn.Module Module)> PrefixedModules()
    {
        if (Side is not null) yield return ("side", Side);
        if (Lst is not null) yield return ("lst", Lst);
        if (Lora is not null) yield return ("lora", Lora);
        if (Adapter is not null) yield return ("adapter", Adapter);
        if (Gate is not null) yield return ("gate", Gate);
    }

    private IEnumerable<nn.Module> Modules() => PrefixedModules().Select(m => m.Module);

    public void Dispose()
    {
        foreach (var module in Modules()) module.Dispose();
    }
}
