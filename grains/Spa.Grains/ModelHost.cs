using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Spa.Model;

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
        var modelOptions = new ModelOptions(Options.Device, Options.DType, Options.Threads);
        string key = $"{Path.GetFullPath(Options.ModelPath)}|{modelOptions}";
        return Loaded.GetOrAdd(key, _ => new Lazy<Task<LlamaModel>>(
            () => Worker.Run(() => LlamaModel.Load(Options.ModelPath, modelOptions)))).Value;
    }

    /// <summary>Layers [from, to) of shard k of N: contiguous ranges whose sizes differ by at most one.</summary>
    public static (int From, int To) LayerRange(int layers, int shard, int shardCount)
    {
        if (shardCount <= 0 || shardCount > layers)
            throw new ArgumentException($"a model of {layers} layers can be split into 1..{layers} shards, not {shardCount}");
        if (shard < 0 || shard >= shardCount) throw new ArgumentOutOfRangeException(nameof(shard));
        return (shard * layers / shardCount, (shard + 1) * layers / shardCount);
    }

    /// <summary>Session slots that fit into the byte budget for a cache of the given bytes per slot (at least one).</summary>
    public int SlotsFor(long bytesPerSlot) =>
        (int)Math.Clamp(Options.KvCacheBytesPerShard / Math.Max(1, bytesPerSlot), 1, 4096);
}
