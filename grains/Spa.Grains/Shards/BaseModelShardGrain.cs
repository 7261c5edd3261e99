using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Orleans.Placement;
using Spa.Grains.Abstractions;
using Spa.Grains.Placement;
using Spa.Model;

namespace Spa.Grains.Shards;

/// <summary>
/// Layers [a_k, b_k) of the base model for shard k of N, with one KV-cache slot per session it serves. Slots are
/// sized from <see cref="SpaModelOptions.KvCacheBytesPerShard"/> and handed out by a <see cref="KvSlotTable"/>; the
/// grain is reentrant, so that a <see cref="StepBatcher"/> can run concurrent steps of many sessions as one
/// <see cref="ShardForward"/> on the torch worker. The grain keeps its activation (its cache is its value) and is not
/// moved by the rebalancer or repartitioner: it stays on the accelerator <see cref="AcceleratorPlacement"/> gave it.
/// </summary>
[KeepAlive]
[Reentrant]
[Immovable(ImmovableKind.Any)]
[AcceleratorPlacement]
public sealed class BaseModelShardGrain(ModelHost host, ClusterAccelerators accelerators, ILocalSiloDetails silo, GrainMetrics metrics, ILogger<BaseModelShardGrain> logger)
    : Grain, IBaseModelShardGrain
{
    private LlamaModel _model = null!;
    private KvCache _cache = null!;
    private KvSlotTable _slots = null!;
    private StepBatcher _batcher = null!;
    private string _modelName = "";
    private string _accelerator = "";
    private int _shard, _shardCount, _from, _to;
    private long _steps, _replayRequests;

    private bool IsFirst => _shard == 0;
    private bool IsLast => _shard == _shardCount - 1;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        (_modelName, _shard, _shardCount) = ShardKey.Parse(this.GetPrimaryKeyString());
        _accelerator = await accelerators.AcceleratorForAsync(_shard, cancellationToken);
        _model = await host.GetModelAsync(_modelName);
        var config = _model.Config;
        (_from, _to) = ModelHost.LayerRange(config.Layers, _shard, _shardCount);
        int layers = _to - _from;
        long bytesPerSlot = ModelHost.KvBytesPerToken(config, _model.DType, layers) * config.MaxSeqLen;
        int slots = host.SlotsFor(bytesPerSlot);
        var model = _model;
        int from = _from;
        _cache = await host.Worker.Run(() => new KvCache(model.Config, slots, model.Config.MaxSeqLen, model.Device, model.DType, from, layers, model.AdvisesHugePages));
        _slots = new KvSlotTable(slots, _cache.Length, metrics.Eviction);
        var forward = new ShardForward(_model, _cache, _from, _to, IsFirst, IsLast, GrainFactory);
        _batcher = new StepBatcher(host.Worker, host.Options, _slots, forward.Run, metrics);
        metrics.KvCacheAllocated(_cache.Bytes);
        logger.LogInformation("shard {Key}: layers [{From}, {To}), {Slots} session slots, {Bytes} bytes of KV cache, batches of up to {MaxBatch} within {Window} ms; accelerator {Accelerator} on {Silo}, computing on {Device}",
            this.GetPrimaryKeyString(), _from, _to, slots, _cache.Bytes, _batcher.MaxBatch, host.Options.BatchWindowMs, _accelerator, silo.SiloAddress, host.Options.Device);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        var cache = _cache;
        if (cache is null) return;
        metrics.KvCacheAllocated(-cache.Bytes);
        await host.Worker.Run(cache.Dispose);
    }

    public ValueTask<ShardDescription> Describe()
    {
        var c = _model.Config;
        return ValueTask.FromResult(new ShardDescription(_modelName, _shard, _shardCount, _from, _to, c.Layers, c.VocabSize, c.MaxSeqLen, c.BosId, c.EosId,
            _accelerator, silo.SiloAddress.ToParsableString()));
    }

    public ValueTask<ShardStats> GetStats() =>
        ValueTask.FromResult(new ShardStats(_cache.Slots, _slots.SessionsHeld, _cache.Bytes, _steps, _slots.Evictions, _replayRequests,
            _batcher.Forwards, _batcher.LargestBatch, _batcher.MeanBatch));

    public ValueTask Release(string sessionId)
    {
        _batcher.Forget(sessionId);
        _slots.Release(sessionId);
        return ValueTask.CompletedTask;
    }

    public async ValueTask<ShardStepResult> Step(ShardStepRequest request)
    {
        long received = Stopwatch.GetTimestamp();
        int start = request.StartPosition, count = request.TotalLength - request.StartPosition;
        if (start < 0 || count <= 0) throw new ArgumentException($"a step needs new positions: start {start}, total {request.TotalLength}");
        if (request.TotalLength > _cache.Capacity)
            throw new ContextOverflowException($"the sequence would reach {request.TotalLength} tokens, beyond the context of {_cache.Capacity}");
        int dim = _model.Config.Dim;
        if (IsFirst && request.Tokens?.Length != count)
            throw new ArgumentException($"the first shard needs the {count} tokens at positions [{start}, {request.TotalLength})");
        if (!IsFirst && (request.Hidden is not { } h || h.Shape is not [var rows, var cols] || rows != count || cols != dim || h.Data.Length != count * dim))
            throw new ArgumentException($"shard {_shard} needs activations of shape [{count}, {dim}]");
        var session = request.SessionId;
        ThrowIfStepping(session);
        _steps++;
        _batcher.Stepped(session);
        while (true)
        {
            if (_slots.NeedsReplay(session, start))
            {
                _replayRequests++;
                return new ShardStepResult(true, null, null);
            }
            int slot = _slots.Acquire(session);
            if (slot >= 0)
            {
                var result = await _batcher.Submit(new SlottedStep(request, slot, count));
                return result.Timings is { } timings ? result with { Timings = timings with { Received = received, Returned = Stopwatch.GetTimestamp() } } : result;
            }
            // Every slot belongs to a session in a batch being formed or run: send the forming batch on and wait.
            await _batcher.FlushAndWaitForAForward();
            ThrowIfStepping(session);
        }
    }

    private void ThrowIfStepping(string session)
    {
        if (_slots.IsPinned(session))
            throw new InvalidOperationException($"session '{session}' sent a step to shard {_shard} while its previous step there is still running");
    }
}
