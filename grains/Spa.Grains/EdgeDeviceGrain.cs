using Microsoft.Extensions.Logging;
using Spa.Model;
using Spa.Model.Plugins;
using static TorchSharp.torch;

namespace Spa.Grains;

/// <summary>The persisted registration of a device.</summary>
[GenerateSerializer, Alias("spa.EdgeDeviceState")]
public sealed class EdgeDeviceState
{
    [Id(0)] public string Owner { get; set; } = "";
    [Id(1)] public string PluginDirectory { get; set; } = "";
    [Id(2)] public string Model { get; set; } = "";
}

/// <summary>
/// A simulated edge device: its ladder plugin is loaded once per activation (on the torch worker, for the model host's
/// base) and answers side steps in the silo. It counts every round trip and the fp32 bytes it carried (4 bytes a
/// value: the taps up, out down), which is where M is measured.
/// </summary>
public sealed class EdgeDeviceGrain(
    [PersistentState("device", SpaGrainsHosting.SessionStorage)] IPersistentState<EdgeDeviceState> state,
    ModelHost host,
    ILogger<EdgeDeviceGrain> logger) : Grain, IEdgeDeviceGrain
{
    private PersonalPlugin? _plugin;
    private LlamaModel? _model;
    private long _roundTrips, _bytesUp, _bytesDown;

    private bool Registered => !string.IsNullOrEmpty(state.State.PluginDirectory);

    public async ValueTask Register(string owner, string pluginDirectory)
    {
        if (string.IsNullOrWhiteSpace(owner)) throw new ArgumentException("a device needs an owner");
        if (string.IsNullOrWhiteSpace(pluginDirectory)) throw new ArgumentException("a simulated device needs its plugin directory");
        await DropPlugin();
        var model = host.ModelName;
        await LoadPlugin(model, pluginDirectory); // a plugin that does not load fails the registration
        state.State = new EdgeDeviceState { Owner = owner, PluginDirectory = pluginDirectory, Model = model };
        await state.WriteStateAsync();
        logger.LogInformation("device {Device} of {Owner}: simulated, plugin {Plugin}", this.GetPrimaryKeyString(), owner, pluginDirectory);
    }

    public ValueTask<EdgeDeviceInfo> Describe() =>
        ValueTask.FromResult(new EdgeDeviceInfo(this.GetPrimaryKeyString(), Required().Owner, Required().PluginDirectory, Required().Model));

    public ValueTask<EdgeDeviceStats> GetStats() => ValueTask.FromResult(new EdgeDeviceStats(_roundTrips, _bytesUp, _bytesDown));

    public async ValueTask<EdgeSideStepResult> SideStep(EdgeSideStepRequest request)
    {
        var registration = Required();
        if (_plugin is null) await LoadPlugin(registration.Model, registration.PluginDirectory);
        var plugin = _plugin!;
        var model = _model!;
        int dim = model.Config.Dim, rows = model.Config.Layers + 1;
        if (request.Taps is not { Shape: [var r, var c] } taps || r != rows || c != dim || taps.Data.Length != rows * dim)
            throw new ArgumentException($"a side step needs the taps h_0..h_L of one position: shape [{rows}, {dim}]");
        var output = await host.Worker.Run(() =>
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var x = tensor(taps.Data, [(long)rows, 1, dim]).to(model.DType, model.Device); // [L+1, 1, d]
            return plugin.Side!.forward(x).to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        });
        long up = 4L * taps.Data.Length, down = 4L * output.Length;
        _roundTrips++;
        _bytesUp += up;
        _bytesDown += down;
        return new EdgeSideStepResult(output, up, down, _roundTrips);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken) => await DropPlugin();

    private EdgeDeviceState Required() => Registered ? state.State
        : throw new InvalidOperationException($"device '{this.GetPrimaryKeyString()}' is not registered");

    private async Task LoadPlugin(string modelName, string directory)
    {
        var model = await host.GetModelAsync(modelName);
        var plugin = await host.Worker.Run(() => PersonalPlugin.Load(directory, model));
        if (plugin.Side is null)
        {
            await host.Worker.Run(plugin.Dispose);
            throw new ArgumentException($"the plugin in {directory} is a {PluginNames.Name(plugin.Kind)} plugin; a device answers side steps of a ladder plugin only");
        }
        (_plugin, _model) = (plugin, model);
    }

    private async Task DropPlugin()
    {
        var plugin = _plugin;
        (_plugin, _model) = (null, null);
        if (plugin is not null) await host.Worker.Run(plugin.Dispose);
    }
}
