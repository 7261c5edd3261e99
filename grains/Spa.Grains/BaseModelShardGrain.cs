using Microsoft.Extensions.Logging;
using Orleans.Placement;
using Spa.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Grains;

/// <summary>
/// Layers [a_k, b_k) of the base model for shard k of N, with one KV-cache slot per session it serves. Slots are
/// sized from <see cref="SpaModelOptions.KvCacheBytesPerShard"/>; when they are all taken, the least recently used
/// session loses its slot. A session whose slot is gone (or whose shard was re-activated) is told to replay its
/// history from position 0, which rebuilds the cache in one prefill. All tensor work runs on the torch worker.
/// The grain keeps its activation (its cache is its value) and is not moved by the rebalancer or repartitioner.
/// </summary>
[KeepAlive]
[Immovable(ImmovableKind.Any)]
public sealed class BaseModelShardGrain(ModelHost host, ILogger<BaseModelShardGrain> logger) : Grain, IBaseModelShardGrain
{
    private readonly Dictionary<string, (LinkedListNode<string> Node, int Slot)> _sessions = new(StringComparer.Ordinal);
    private readonly LinkedList<string> _recent = new(); // most recently used first
    private readonly Stack<int> _freeSlots = new();
    private LlamaModel _model = null!;
    private KvCache _cache = null!;
    private string _modelName = "";
    private int _shard, _shardCount, _from, _to;
    private long _steps, _evictions, _replayRequests;

    private bool IsFirst => _shard == 0;
    private bool IsLast => _shard == _shardCount - 1;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        (_modelName, _shard, _shardCount) = ShardKey.Parse(this.GetPrimaryKeyString());
        _model = await host.GetModelAsync(_modelName);
        var config = _model.Config;
        (_from, _to) = ModelHost.LayerRange(config.Layers, _shard, _shardCount);
        int layers = _to - _from;
        long bytesPerSlot = 2L * layers * config.MaxSeqLen * config.KvHeads * config.HeadDim * ElementSize(_model.DType);
        int slots = host.SlotsFor(bytesPerSlot);
        var model = _model;
        int from = _from;
        _cache = await host.Worker.Run(() => new KvCache(model.Config, slots, model.Config.MaxSeqLen, model.Device, model.DType, from, layers));
        for (int s = slots - 1; s >= 0; s--) _freeSlots.Push(s);
        logger.LogInformation("shard {Key}: layers [{From}, {To}), {Slots} session slots, {Bytes} bytes of KV cache",
            this.GetPrimaryKeyString(), _from, _to, slots, _cache.Bytes);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        var cache = _cache;
        if (cache is not null) await host.Worker.Run(cache.Dispose);
    }

    public ValueTask<ShardDescription> Describe()
    {
        var c = _model.Config;
        return ValueTask.FromResult(new ShardDescription(_modelName, _shard, _shardCount, _from, _to, c.Layers, c.VocabSize, c.MaxSeqLen, c.BosId, c.EosId));
    }

    public ValueTask<ShardStats> GetStats() =>
        ValueTask.FromResult(new ShardStats(_cache.Slots, _sessions.Count, _cache.Bytes, _steps, _evictions, _replayRequests));

    public ValueTask Release(string sessionId)
    {
        if (_sessions.Remove(sessionId, out var held))
        {
            _recent.Remove(held.Node);
            _freeSlots.Push(held.Slot);
        }
        return ValueTask.CompletedTask;
    }

    public async ValueTask<ShardStepResult> Step(ShardStepRequest request)
    {
        int start = request.StartPosition, count = request.TotalLength - request.StartPosition;
        if (start < 0 || count <= 0) throw new ArgumentException($"a step needs new positions: start {start}, total {request.TotalLength}");
        if (request.TotalLength > _cache.Capacity)
            throw new ContextOverflowException($"the sequence would reach {request.TotalLength} tokens, beyond the context of {_cache.Capacity}");
        int dim = _model.Config.Dim;
        if (IsFirst && request.Tokens?.Length != count)
            throw new ArgumentException($"the first shard needs the {count} tokens at positions [{start}, {request.TotalLength})");
        if (!IsFirst && (request.Hidden is not { } h || h.Shape is not [var rows, var cols] || rows != count || cols != dim || h.Data.Length != count * dim))
            throw new ArgumentException($"shard {_shard} needs activations of shape [{count}, {dim}]");
        _steps++;

        bool held = _sessions.TryGetValue(request.SessionId, out var entry);
        int cached = held ? _cache.Length(entry.Slot) : 0;
        if (start != 0 && start != cached)
        {
            _replayRequests++;
            return new ShardStepResult(true, null, null);
        }
        int slot = held ? Touch(request.SessionId, entry) : Acquire(request.SessionId);

        var model = _model;
        var cache = _cache;
        int from = _from, to = _to;
        bool first = IsFirst, last = IsLast;
        return await host.Worker.Run(() => Forward(model, cache, slot, from, to, first, last, start, count, request.Tokens, request.Hidden));
    }

    /// <summary>Runs on the torch worker.</summary>
    private static ShardStepResult Forward(LlamaModel model, KvCache cache, int slot, int from, int to, bool first, bool last,
        int start, int count, int[]? tokens, Activations? input)
    {
        if (!TorchWorker.OnWorkerThread) throw new InvalidOperationException("tensor work must run on the torch worker, not on the Orleans scheduler");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        int dim = model.Config.Dim;
        if (start == 0) cache.Clear(slot);
        using var batch = AttentionBatch.ForCache(model.Config, model.Rope, cache, [slot], [count], model.Device);
        var h = first
            ? model.Embed(model.PadTokens([tokens!], count))
            : tensor(input!.Data, [1L, count, dim]).to(model.DType, model.Device);
        h = model.RunLayers(h, batch, from, to);
        batch.Commit();
        if (last)
        {
            var lastRow = h.reshape(-1, dim).index_select(0, tensor(new long[] { count - 1 }, device: model.Device));
            return new ShardStepResult(false, null, model.Logits(lastRow).cpu().data<float>().ToArray());
        }
        var data = h.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        return new ShardStepResult(false, new Activations(data, [count, dim]), null);
    }

    private int Touch(string session, (LinkedListNode<string> Node, int Slot) entry)
    {
        _recent.Remove(entry.Node);
        _recent.AddFirst(entry.Node);
        return entry.Slot;
    }

    private int Acquire(string session)
    {
        if (!_freeSlots.TryPop(out int slot))
        {
            var victim = _recent.Last!;
            _recent.RemoveLast();
            slot = _sessions[victim.Value].Slot;
            _sessions.Remove(victim.Value);
            _evictions++;
        }
        _sessions[session] = (_recent.AddFirst(session), slot);
        return slot;
    }

    private static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 => 8,
        ScalarType.Float32 => 4,
        _ => 2,
    };
}
