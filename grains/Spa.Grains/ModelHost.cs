using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Spa.Grains.Abstractions;
using Spa.Model;
using Spa.Model.Plugins;
using static TorchSharp.torch;

namespace Spa.Grains;

/// <summary>
/// The base model of this process, loaded once (on the torch worker) the first time a grain needs it and shared by
/// every shard grain of every silo in the process. Registered as a singleton.
/// </summary>
public sealed class ModelHost(IOptions<SpaModelOptions> options)
{
    private static readonly ConcurrentDictionary<string, Lazy<Task<LlamaModel>>> Loaded = new();

    public SpaModelOptions Options { get; } = options.Value;

    public string ModelName => Options.EffectiveModelName;

    public TorchWorker Worker => TorchWorker.Shared;

    /// <summary>The model called <paramref name="name"/>; throws when this process does not serve it.</summary>
    public Task<LlamaModel> GetModelAsync(string name)
    {
        if (string.IsNullOrWhiteSpace(Options.ModelPath))
            throw new InvalidOperationException($"no model is configured: set {SpaModelOptions.Section}:ModelPath");
        if (!string.Equals(name, ModelName, StringComparison.Ordinal))
            throw new ArgumentException($"unknown model '{name}': this silo serves '{ModelName}'");
        var modelOptions = new ModelOptions(Options.Device, Options.DType, Options.Threads, Options.MapWeights, Options.HugePages);
        string key = $"{Path.GetFullPath(Options.ModelPath)}|{modelOptions}";
        return Loaded.GetOrAdd(key, _ => new Lazy<Task<LlamaModel>>(() => LoadAsync(Options.ModelPath, modelOptions))).Value;
    }

    /// <summary>
    /// Ready once the weights are: their identity is still being hashed beside (for a mapped LLaMA-7B it takes several
    /// times the load), and only a device's plugin needs it, so grains that do await <see cref="LlamaModel.IdentityAsync"/>
    /// and never read <see cref="LlamaModel.Identity"/>, which would wait on a scheduler thread.
    /// </summary>
    private Task<LlamaModel> LoadAsync(string path, ModelOptions modelOptions) => Worker.Run(() => LlamaModel.Load(path, modelOptions));

    /// <summary>
    /// The logits of a token the edge answered: W_lm out (side, switch) or W_lm (n + out) (parallel, spa), from the last
    /// shard's n and the side network's out (dim values each), computed on the torch worker as the in-process stepper does.
    /// </summary>
    public async Task<float[]> PluginLogitsAsync(string modelName, CombinationMode mode, float[] normed, float[] output)
    {
        var model = await GetModelAsync(modelName);
        int dim = model.Config.Dim;
        if (normed.Length != dim || output.Length != dim)
            throw new ArgumentException($"n and out need {dim} values each, got {normed.Length} and {output.Length}");
        return await Worker.Run(() =>
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var n = tensor(normed, [1L, dim]).to(model.DType, model.Device);
            var o = tensor(output, [1L, dim]).to(model.DType, model.Device);
            return HostCopy.Floats(PluginForward.Combine(model, mode, n, o));
        });
    }

    /// <summary>
    /// The cloud's part of a device's plugin, its gate, built from the weights the device handed over. The caller owns
    /// the result and disposes it.
    /// </summary>
    public async Task<CloudGate> CreateGateAsync(string modelName, DevicePlugin plugin)
    {
        var model = await GetModelAsync(modelName);
        if (plugin.GateWeights is not { } weights)
            throw new ArgumentException($"the device's {WireNames.Of(plugin.Kind)} plugin has no gate, so it cannot run in a gated mode (switch, spa)");
        var gate = await Worker.Run(() => Gate.FromWeights(weights, model.Config.Dim, plugin.GateReadsToken ? GateInput.HiddenAndToken : GateInput.Hidden, model.DType, model.Device));
        return new CloudGate(Worker, model, gate, plugin.Tau);
    }

    /// <summary>Layers [from, to) of shard k of N: contiguous ranges whose sizes differ by at most one.</summary>
    public static (int From, int To) LayerRange(int layers, int shard, int shardCount)
    {
        if (shardCount <= 0 || shardCount > layers)
            throw new ArgumentException($"a model of {layers} layers can be split into 1..{layers} shards, not {shardCount}");
        if (shard < 0 || shard >= shardCount) throw new ArgumentOutOfRangeException(nameof(shard));
        return (shard * layers / shardCount, (shard + 1) * layers / shardCount);
    }

    /// <summary>KV-cache bytes one token takes in a shard of <paramref name="layers"/> layers: keys and values of every layer.</summary>
    public static long KvBytesPerToken(LlamaConfig config, ScalarType dtype, int layers) =>
        2L * layers * config.KvHeads * config.HeadDim * ElementSize(dtype);

    private static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 => 8,
        ScalarType.Float32 => 4,
        _ => 2,
    };

    /// <summary>Session slots that fit into the byte budget for a cache of the given bytes per slot (at least one).</summary>
    public int SlotsFor(long bytesPerSlot) =>
        (int)Math.Clamp(Options.KvCacheBytesPerShard / Math.Max(1, bytesPerSlot), 1, 4096);
}

/// <summary>A plugin's gate held in the cloud (see <see cref="Gate"/>), run on the torch worker.</summary>
public sealed class CloudGate(TorchWorker worker, LlamaModel model, Gate gate, double tau)
{
    /// <summary>The plugin's own threshold.</summary>
    public double Tau { get; } = tau;

    /// <summary>
    /// The gate's edge probability for n and the current token's embedding h_0 (dim values each), in float64 as the
    /// in-process stepper reads it.
    /// </summary>
    public Task<double> ProbabilityAsync(float[] normed, float[] token) => worker.Run(() =>
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var n = tensor(normed, [1L, normed.Length]).to(model.DType, model.Device);
        var h0 = tensor(token, [1L, token.Length]).to(model.DType, model.Device);
        return gate.forward(n, h0).to(ScalarType.Float64).cpu().data<double>()[0];
    });

    public Task DisposeAsync() => worker.Run(gate.Dispose);
}
