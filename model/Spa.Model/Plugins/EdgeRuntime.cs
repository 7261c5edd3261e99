using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// The device's half of a split plugin: it answers the cloud's calls with the private networks (ladder side network,
/// LoRA, adapters) and nothing else; the gate, which the cloud holds, is not used here. Activations arrive and leave
/// as row-major fp32 values of rows of the base's width. Not thread-safe: a device answers one call at a time.
/// </summary>
public sealed class EdgeRuntime(PersonalPlugin plugin)
{
    public PersonalPlugin Plugin { get; } = plugin.Side is not null || plugin.Lora is not null || plugin.Adapter is not null ? plugin
        : throw new ArgumentException($"a {PluginNames.Name(plugin.Kind)} plugin cannot answer split calls: use a ladder, lora or adapter plugin");

    /// <summary>A ladder side step: the taps h_0..h_L of one position [L+1, dim] to out [dim].</summary>
    public float[] SideNetwork(float[] taps)
    {
        var side = Plugin.Side ?? throw NotHeld("side network");
        int rows = Plugin.BaseLayers + 1;
        if (taps.Length != rows * Plugin.BaseDim)
            throw new ArgumentException($"a side step carries the taps h_0..h_{Plugin.BaseLayers} of one position: {rows} x {Plugin.BaseDim} values, got {taps.Length}");
        return Run(taps, rows, x => side.forward(x.unsqueeze(1))); // [L+1, 1, dim] -> [1, dim]
    }

    /// <summary>LoRA of one layer: its normalised attention input [rows, dim] to the query and value deltas [rows, dim + kvDim].</summary>
    public float[] LoraDeltas(int layer, float[] input, int rows)
    {
        var lora = Plugin.Lora ?? throw NotHeld("LoRA");
        return Run(Checked(layer, input, rows), rows, x => lora.Deltas(layer, x));
    }

    /// <summary>One adapter: [rows, dim] in, adapted [rows, dim] out.</summary>
    public float[] Adapt(int layer, AdapterSite site, float[] input, int rows)
    {
        var adapter = Plugin.Adapter ?? throw NotHeld("adapter");
        return Run(Checked(layer, input, rows), rows, x => adapter.Adapt(layer, site, x));
    }

    private float[] Checked(int layer, float[] input, int rows)
    {
        if ((uint)layer >= (uint)Plugin.BaseLayers) throw new ArgumentException($"layer {layer} is outside the base's {Plugin.BaseLayers} layers");
        if (rows <= 0 || input.Length != rows * Plugin.BaseDim)
            throw new ArgumentException($"a call carries rows of {Plugin.BaseDim} values: got {input.Length} values for {rows} rows");
        return input;
    }

    private float[] Run(float[] input, int rows, Func<Tensor, Tensor> network)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = tensor(input, [(long)rows, Plugin.BaseDim]).to(Plugin.DType, Plugin.Device);
        return HostCopy.Floats(network(x));
    }

    private ArgumentException NotHeld(string network) =>
        new($"this device holds a {PluginNames.Name(Plugin.Kind)} plugin, which has no {network}");
}
