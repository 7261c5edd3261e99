using TorchSharp;
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

    public Tensor AfterAttention(int layer, Tensor output) => Adapt(attentionDown[layer], attentionUp[layer], output);

    public Tensor AfterMlp(int layer, Tensor output) => Adapt(mlpDown[layer], mlpUp[layer], output);


    private Tensor Adapt(Linear down, Linear up, Tensor output)
    {
        using var scope = NewDisposeScope();
        Transport?.RoundTrip(output.shape[0]); // one call per sequence, whatever its number of new tokens
        var x = Transport?.ToEdge(output) ?? output;
        var adapted = x.add(up.forward(down.forward(x).relu()), Held.One);
        return (Transport?.ToCloud(adapted) ?? adapted).MoveToOuterDisposeScope();
    }
}
