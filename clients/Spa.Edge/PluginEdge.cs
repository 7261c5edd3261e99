using System.Diagnostics;
using System.Text.Json;
using Spa.Grains.Abstractions;
using Spa.Model;
using Spa.Model.Latency;
using Spa.Model.Plugins;

namespace Spa.Edge;

/// <summary>
/// A device's private plugin answering the cloud's calls. One class serves both kinds of device: spa-device registers
/// it as the observer of its connection, and a simulated device grain calls it in the silo. The plugin is loaded from
/// the device's own directory for the base the cluster describes (<see cref="BaseModelFacts"/>), never from the base's
/// weights. Calls are answered one at a time.
/// </summary>
public sealed class PluginEdge : IEdgeDeviceObserver, IDisposable
{
    private readonly EdgeRuntime _runtime;
    private readonly Lock _oneAtATime = new();

    private readonly double _flopsPerRow;

    private PluginEdge(PersonalPlugin plugin, LlamaConfig baseConfig)
    {
        _runtime = new EdgeRuntime(plugin);
        _flopsPerRow = PluginTraffic.For(baseConfig, plugin.Kind, plugin.Dimensions, TapPlacement.Edge, ActivationType.Fp32).EdgeFlops;
    }

    /// <summary>Loads the plugin in <paramref name="directory"/> for the described base, on the CPU in fp32 unless told otherwise.</summary>
    public static PluginEdge Load(string directory, BaseModelFacts facts, string device = "cpu", string dtype = "float32")
    {
        LlamaConfig config;
        try
        {
            config = JsonSerializer.Deserialize<LlamaConfig>(facts.ConfigJson) ?? throw new JsonException("empty");
            config.Validate();
        }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        {
            throw new InvalidDataException($"the cluster described its base model in a form this device cannot read ({e.Message})");
        }
        var options = new ModelOptions(device, dtype);
        var plugin = PersonalPlugin.Load(directory, new PluginBase(config, facts.Identity, options.ScalarType, options.TorchDevice));
        try
        {
            return new PluginEdge(plugin, config);
        }
        catch
        {
            plugin.Dispose();
            throw;
        }
    }

    /// <summary>The served base's description, as <see cref="Load"/> reads it, once the weights' identity is known.</summary>
    public static async Task<BaseModelFacts> FactsAsync(string modelName, LlamaModel model) =>
        new(modelName, JsonSerializer.Serialize(model.Config), await model.IdentityAsync());

    public PersonalPlugin Plugin => _runtime.Plugin;

    public DevicePluginKind Kind => Plugin.Kind.ToContract();

    /// <summary>What the cloud may hold: the kind, the base it belongs to, and the gate with its tau and what it reads.</summary>
    public DevicePlugin Describe() => new(Kind, Plugin.BaseIdentity, Plugin.Gate?.Weights(), Plugin.GateSettings?.Tau ?? GateSettings.Default.Tau,
        Plugin.Gate?.Input == GateInput.HiddenAndToken);

    /// <summary>FLOPs of the call on the device, as the latency model counts them (per row: position or token).</summary>
    public double Flops(EdgeCall call) => _flopsPerRow * (call.Kind == EdgeCallKind.SideNetwork ? 1 : call.Input.Shape[0]);

    /// <summary>
    /// The device and link this process stands for when it answers as an observer (<see cref="Answer"/>): a real
    /// device whose answers arrive as slowly as those of a phone on 4G, for load and timeout testing. Default: none.
    /// </summary>
    public EdgeProfile Profile { get; set; } = EdgeProfiles.Local;

    public Task<EdgeAnswer> Answer(EdgeCall call)
    {
        if (Profile == EdgeProfiles.Local) return Task.FromResult(AnswerNow(call));
        long started = Stopwatch.GetTimestamp();
        return Profile.Emulate(call, AnswerNow(call), Flops(call), started);
    }

    /// <summary>Runs the call on this thread and times it.</summary>
    public EdgeAnswer AnswerNow(EdgeCall call)
    {
        var input = call.Input;
        if (input.Shape is not [var rows, _]) throw new ArgumentException("a call carries a [rows, dim] block of activations");
        lock (_oneAtATime)
        {
            var watch = Stopwatch.StartNew();
            var output = call.Kind switch
            {
                EdgeCallKind.SideNetwork => _runtime.SideNetwork(input.Data),
                EdgeCallKind.LoraAttention => _runtime.LoraDeltas(call.Layer, input.Data, rows),
                EdgeCallKind.AdapterAttention => _runtime.Adapt(call.Layer, AdapterSite.Attention, input.Data, rows),
                EdgeCallKind.AdapterMlp => _runtime.Adapt(call.Layer, AdapterSite.Mlp, input.Data, rows),
                _ => throw new ArgumentException($"unknown call kind {call.Kind}"),
            };
            int outRows = call.Kind == EdgeCallKind.SideNetwork ? 1 : rows;
            return new EdgeAnswer(new Activations(output, [outRows, output.Length / outRows]), watch.Elapsed.TotalMilliseconds);
        }
    }

    public void Dispose() => Plugin.Dispose();
}
