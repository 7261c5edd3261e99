using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// Houlsby adapters after the attention and after the MLP of every layer: y = x + U ReLU(V x + c) + e with a
/// bottleneck of m. Split across cloud and edge, each adapter is one round trip (x up, y down): M = 2L.
/// </summary>
public sealed class AdapterPlugin : nn.Module, ILayerHook
{
    private readonly ModuleList<Linear> attentionDown;
    private readonly ModuleList<Linear> attentionUp;
    private readonly ModuleList<Linear> mlpDown;
    private readonly ModuleList<Linear> mlpUp;

    public AdapterPlugin(LlamaConfig config, int bottleneck) : base(nameof(AdapterPlugin))
    {
        if (bottleneck <= 0) throw new ArgumentException($"adapter bottleneck must be positive, got {bottleneck}");
        Bottleneck = bottleneck;
        attentionDown = PerLayer.Modules(config.Layers, () => nn.Linear(config.Dim, bottleneck));
        attentionUp = PerLayer.Modules(config.Layers, () => nn.Linear(bottleneck, config.Dim));
        mlpDown = PerLayer.Modules(config.Layers, () => nn.Linear(config.Dim, bottleneck));
        mlpUp = PerLayer.Modules(config.Layers, () => nn.Linear(bottleneck, config.Dim));
        RegisterComponents();
        // A zero up-projection starts every adapter as the identity.
        using (no_grad())
            foreach (var up in attentionUp.Concat(mlpUp))
            {
                up.weight!.zero_();
                up.bias!.zero_();
            }
    }

    public int Bottleneck { get; }

    /// <summary>Set while the plugin runs split: every adapter call then crosses it.</summary>
    public EdgeTransport? Transport { get; set; }

    public (Tensor Query, Tensor Value)? AttentionDelta(int layer, Tensor normalisedInput) => null;

    public Tensor AfterAttention(int layer, Tensor output) => Split(layer, AdapterSite.Attention, output);

    public Tensor AfterMlp(int layer, Tensor output) => Split(layer, AdapterSite.Mlp, output);

    /// <summary>What the device computes for one adapter: x [..., dim] to x + U ReLU(V x + c) + e.</summary>
    public Tensor Adapt(int layer, AdapterSite site, Tensor x)
    {
        var (down, up) = site == AdapterSite.Attention ? (attentionDown[layer], attentionUp[layer]) : (mlpDown[layer], mlpUp[layer]);
        using var scope = NewDisposeScope();
        return x.add(up.forward(down.forward(x).relu()), Held.One).MoveToOuterDisposeScope();
    }

    private Tensor Split(int layer, AdapterSite site, Tensor output)
    {
        using var scope = NewDisposeScope();
        Transport?.RoundTrip((int)output.shape[0]); // one call per request, whatever its number of new tokens
        var adapted = Adapt(layer, site, Transport?.ToEdge(output) ?? output);
        return (Transport?.ToCloud(adapted) ?? adapted).MoveToOuterDisposeScope();
    }
}

/// <summary>Where an adapter sits in a layer: after the attention or after the MLP.</summary>
public enum AdapterSite
{
    Attention,
    Mlp,
}
