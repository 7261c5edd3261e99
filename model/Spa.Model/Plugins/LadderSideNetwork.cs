using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>
/// The SPA side network (the plugin of the SPA paper's public code). It reads the base's residual stream at every
/// layer (the taps h_0..h_L of one position) and keeps no state between positions:
/// <code>
///   s_0 = W_in h_0 + b_in
///   s_l = D_l h_l + b_l + A_l(ReLU(s_{l-1}))              l = 1..L
///   A_l(z) = z + U_l Dropout(ReLU(V_l z + c_l)) + e_l
///   out  = W_out ReLU(s_L) + b_out
/// </code>
/// The down-projections (W_in, D_l) are <see cref="Project"/>; the rest is <see cref="Combine"/>. With taps placed at
/// the edge both run on the device; with taps placed in the cloud the cloud runs <see cref="Project"/> and sends its
/// much smaller result.
/// </summary>
public sealed class LadderSideNetwork : nn.Module<Tensor, Tensor>
{
    private readonly Linear input;
    private readonly ModuleList<Linear> downs;
    private readonly ModuleList<Linear> adapterIn;
    private readonly ModuleList<Linear> adapterOut;
    private readonly Linear output;
    private readonly Dropout dropout;

    public LadderSideNetwork(int dim, int layers, int sideDim, int adapterDim, double dropoutRate = 0.0) : base(nameof(LadderSideNetwork))
    {
        if (sideDim <= 0 || sideDim > dim / 2) throw new ArgumentException($"side width must be in 1..{dim / 2} (at most half the model width {dim}), got {sideDim}");
        if (adapterDim <= 0) throw new ArgumentException($"adapter width must be positive, got {adapterDim}");
        Dim = dim;
        Layers = layers;
        SideDim = sideDim;
        AdapterDim = adapterDim;
        input = nn.Linear(dim, sideDim);
        downs = PerLayer.Modules(layers, () => nn.Linear(dim, sideDim));
        adapterIn = PerLayer.Modules(layers, () => nn.Linear(sideDim, adapterDim));
        adapterOut = PerLayer.Modules(layers, () => nn.Linear(adapterDim, sideDim));
        output = nn.Linear(sideDim, dim);
        dropout = nn.Dropout(dropoutRate);
        RegisterComponents();
        // A zero output projection makes a fresh plugin add nothing: parallel and spa start exactly at the base.
        using (no_grad())
        {
            output.weight!.zero_();
            output.bias!.zero_();
        }
    }

    public int Dim { get; }
    public int Layers { get; }
    public int SideDim { get; }
    public int AdapterDim { get; }

    /// <summary>taps: [L+1, N, d] (h_0..h_L of N positions). Returns the projected taps [L+1, N, d_s].</summary>
    public Tensor Project(Tensor taps) => PerLayer.Project(input, downs, taps);

    /// <summary>projected: [L+1, N, d_s] from <see cref="Project"/>. Returns out: [N, d].</summary>
    public Tensor Combine(Tensor projected)
    {
        using var scope = NewDisposeScope();
        var s = projected[0];
        for (int l = 1; l <= Layers; l++)
        {
            var z = s.relu();
            var adapted = z.add(adapterOut[l - 1].forward(dropout.forward(adapterIn[l - 1].forward(z).relu())), Held.One);
            s = projected[l].add(adapted, Held.One);
        }
        return output.forward(s.relu()).MoveToOuterDisposeScope();
    }

    /// <summary>taps: [L+1, N, d]. Returns out: [N, d].</summary>
    public override Tensor forward(Tensor taps)
    {
        using var scope = NewDisposeScope();
        return Combine(Project(taps)).MoveToOuterDisposeScope();
    }

    /// <summary>Multiply-adds per position on the device, counted as 2 FLOPs each, for the latency model.</summary>
    public long FlopsPerToken(TapPlacement placement)
    {
        long projections = (long)(Layers + 1) * Dim * SideDim;
        long adapters = 2L * Layers * SideDim * AdapterDim;
        long outputs = (long)SideDim * Dim;
        return 2 * ((placement == TapPlacement.Edge ? projections : 0) + adapters + outputs);
    }

    public long ParameterCount => parameters().Sum(p => p.NumberOfElements);
}
