using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Orleans.Placement;
using Spa.Grains.Abstractions;
using Spa.Grains.Placement;
using Spa.Model;
using static TorchSharp.torch;

namespace Spa.Grains;

/// <summary>
/// Layers [a_k, b_k) of the base model for shard k of N, with one KV-cache slot per session it serves. Slots are
/// sized from <see cref="SpaModelOptions.KvCacheBytesPerShard"/>; when they are all taken, the least recently used
/// session loses its slot. A session whose slot is gone (or whose shard was re-activated) is told to replay its
/// history from position 0, which rebuilds the cache in one prefill. All tensor work runs on the torch worker.
/// The grain keeps its activation (its cache is its value) and is not moved by the rebalancer or repartitioner: it
/// stays on the accelerator <see cref="AcceleratorPlacement"/> gave it.
/// <para>
/// Batching: the grain is reentrant, so step requests of many sessions wait together. The first request of a batch
/// opens a collection window of <see cref="SpaModelOptions.BatchWindowMs"/>; the batch goes to the torch worker when
/// the window ends, when it holds <see cref="SpaModelOptions.MaxBatch"/> requests, or as soon as every session that
/// stepped here recently (and is not in a forward already) is in it, so that a lone session never waits. Requests with
/// the same number of new positions run as one forward over their cache slots (no padding: a row's result does not
/// depend on the others, so the tokens are those of unbatched decoding). A slot in a batch being formed or run is never
/// evicted or freed.
/// </para>
/// </summary>
[KeepAlive]
[Reentrant]
[Immovable(ImmovableKind.Any)]
[AcceleratorPlacement]
public sealed class BaseModelShardGrain(ModelHost host, ClusterAccelerators accelerators, ILocalSiloDetails silo, GrainMetrics metrics, ILogger<BaseModelShardGrain> logger)
    : Grain, IBaseModelShardGrain
{
    /// <summary>A session that stepped within this time is expected to step again soon; a batch waits for it.</summary>
    private static readonly long ActiveHorizon = Stopwatch.Frequency; // one second

    private readonly Dictionary<string, (LinkedListNode<string> Node, int Slot)> _sessions = new(StringComparer.Ordinal);
    private readonly LinkedList<string> _recent = new(); // most recently used first
    private readonly Stack<int> _freeSlots = new();
    private readonly Dictionary<string, long> _lastStep = new(StringComparer.Ordinal); // session -> Stopwatch timestamp
    private readonly HashSet<string> _pinned = new(StringComparer.Ordinal); // sessions in a batch being formed or run
    private readonly HashSet<string> _releaseAfterBatch = new(StringComparer.Ordinal);
    private List<PendingStep> _pending = [];
    private TaskCompletionSource? _wake; // wakes the batch being collected to look at it again
    private bool _forceFlush; // a step waits for a slot: the batch being collected goes now
    private TaskCompletionSource _batchEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _inForward; // requests handed to the torch worker and not yet answered
    private LlamaModel _model = null!;
    private KvCache _cache = null!;
    private string _modelName = "";
    private string _accelerator = "";
    private int _shard, _shardCount, _from, _to;
    private long _steps, _evictions, _replayRequests, _forwards, _forwardedSteps;
    private int _largestBatch;

    private bool IsFirst => _shard == 0;
    private bool IsLast => _shard == _shardCount - 1;
    private int MaxBatch => Math.Max(1, Math.Min(host.Options.MaxBatch, _cache.Slots));

    private sealed record PendingStep(ShardStepRequest Request, int Slot, int Count, TaskCompletionSource<ShardStepResult> Done, long QueuedAt);

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
        _cache = await host.Worker.Run(() => new KvCache(model.Config, slots, model.Config.MaxSeqLen, model.Device, model.DType, from, layers));
        for (int s = slots - 1; s >= 0; s--) _freeSlots.Push(s);
        metrics.KvCacheAllocated(_cache.Bytes);
        logger.LogInformation("shard {Key}: layers [{From}, {To}), {Slots} session slots, {Bytes} bytes of KV cache, batches of up to {MaxBatch} within {Window} ms; accelerator {Accelerator} on {Silo}, computing on {Device}",
            this.GetPrimaryKeyString(), _from, _to, slots, _cache.Bytes, MaxBatch, host.Options.BatchWindowMs, _accelerator, silo.SiloAddress, host.Options.Device);
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
        ValueTask.FromResult(new ShardStats(_cache.Slots, _sessions.Count, _cache.Bytes, _steps, _evictions, _replayRequests,
            _forwards, _largestBatch, _forwards == 0 ? 0 : (double)_forwardedSteps / _forwards));

    public ValueTask Release(string sessionId)
    {
        _lastStep.Remove(sessionId);
        if (_pinned.Contains(sessionId)) _releaseAfterBatch.Add(sessionId); // its slot is in a forward: free it after
        else Free(sessionId);
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
        var session = request.SessionId;
        if (_pinned.Contains(session))
            throw new InvalidOperationException($"session '{session}' sent a step to shard {_shard} while its previous step there is still running");
        _steps++;
        _releaseAfterBatch.Remove(session);
        _lastStep[session] = Stopwatch.GetTimestamp();

        int slot;
        while (true)
        {
            bool held = _sessions.TryGetValue(session, out var entry);
            int cached = held ? _cache.Length(entry.Slot) : 0;
            if (start != 0 && start != cached)
            {
                _replayRequests++;
                return new ShardStepResult(true, null, null);
            }
            slot = held ? Touch(entry) : Acquire(session);
            if (slot >= 0) break;
            // Every slot belongs to a session in a batch being formed or run: send the forming batch on and wait.
            if (_pending.Count > 0) { _forceFlush = true; _wake?.TrySetResult(); }
            await _batchEnded.Task;
            if (_pinned.Contains(session))
                throw new InvalidOperationException($"session '{session}' sent a step to shard {_shard} while its previous step there is still running");
        }

        var pending = new PendingStep(request, slot, count, new TaskCompletionSource<ShardStepResult>(TaskCreationOptions.RunContinuationsAsynchronously),
            Stopwatch.GetTimestamp());
        _pinned.Add(session);
        _pending.Add(pending);
        if (_pending.Count == 1) _ = CollectAndRun(); // opens the window; it runs until its first wait
        else _wake?.TrySetResult();
        return await pending.Done.Task;
    }

    /// <summary>True when the forming batch should go now: it is full, or no session expected to join it is missing.</summary>
    private bool BatchIsComplete()
    {
        if (_pending.Count >= MaxBatch) return true;
        long now = Stopwatch.GetTimestamp();
        int expected = 0;
        List<string>? stale = null;
        foreach (var (session, at) in _lastStep)
        {
            if (now - at <= ActiveHorizon) expected++;
            else (stale ??= []).Add(session);
        }
        if (stale is not null) foreach (var s in stale) _lastStep.Remove(s);
        return _pending.Count >= expected - _inForward;
    }

    /// <summary>
    /// Collects the batch the first pending request opened, then runs it. While the torch worker is busy (with this
    /// shard's forward or another shard's: all shards of a process share it), the batch keeps collecting, since it could
    /// not run earlier anyway, and then gives the sessions a window to join once the worker is free, so that sessions
    /// that fell into different batches, here or at other shards, merge again. It goes at once when every expected
    /// session is in, when full, or when slots run out.
    /// </summary>
    private async Task CollectAndRun()
    {
        var window = TimeSpan.FromMilliseconds(Math.Max(0, host.Options.BatchWindowMs));
        long Deadline() => Stopwatch.GetTimestamp() + (long)(window.TotalSeconds * Stopwatch.Frequency);
        var deadline = Deadline();
        Task? delay = null;
        while (!_forceFlush && _pending.Count < MaxBatch)
        {
            if (_inForward == 0 && BatchIsComplete()) break;
            bool busy = _inForward > 0 || host.Worker.IsBusy;
            long now = Stopwatch.GetTimestamp();
            if (!busy && now >= deadline) break;
            var wake = _wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (busy)
            {
                // This shard's forward ends its batch; another shard's work ends when the worker is idle.
                await Task.WhenAny(wake.Task, _inForward > 0 ? _batchEnded.Task : host.Worker.WhenIdle());
                if (_inForward == 0 && !host.Worker.IsBusy) (deadline, delay) = (Deadline(), null);
            }
            else
            {
                delay ??= Task.Delay(TimeSpan.FromSeconds((double)(deadline - now) / Stopwatch.Frequency));
                await Task.WhenAny(wake.Task, delay);
            }
        }
        _wake = null;
        _forceFlush = false;
        var batch = _pending;
        _pending = [];
        _inForward += batch.Count;
        // One forward per number of new positions: decode steps together, a prefill or replay with its equals.
        // Sessions with a split plugin run apart: their forward waits on their devices.
        foreach (var group in batch.GroupBy(p => (p.Count, p.Request.Edge is not null)))
            await RunForward([.. group]);
    }

    /// <summary>Runs one group on the torch worker; its sessions leave the batch before they get their answers.</summary>
    private async Task RunForward(PendingStep[] group)
    {
        _forwards++;
        _forwardedSteps += group.Length;
        _largestBatch = Math.Max(_largestBatch, group.Length);
        metrics.Forward(group.Length);
        foreach (var p in group) metrics.QueueWait(p.QueuedAt);
        var model = _model;
        var cache = _cache;
        int from = _from, to = _to;
        bool first = IsFirst, last = IsLast;
        var grains = GrainFactory;
        ShardStepResult[]? results = null;
        Exception? failure = null;
        try
        {
            results = await host.Worker.Run(() => Forward(model, cache, from, to, first, last, group, grains));
        }
        catch (Exception e)
        {
            failure = e;
        }
        _inForward -= group.Length;
        foreach (var p in group)
        {
            var session = p.Request.SessionId;
            _pinned.Remove(session);
            if (_releaseAfterBatch.Remove(session)) Free(session);
        }
        var ended = _batchEnded;
        _batchEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ended.SetResult();
        for (int i = 0; i < group.Length; i++)
        {
            if (results is not null) group[i].Done.TrySetResult(results[i]);
            else group[i].Done.TrySetException(failure!);
        }
    }

    /// <summary>Runs on the torch worker: one forward over the slots of a group of steps with the same new-position count.</summary>
    private static ShardStepResult[] Forward(LlamaModel model, KvCache cache, int from, int to, bool first, bool last, PendingStep[] group, IGrainFactory grains)
    {
        if (!TorchWorker.OnWorkerThread) throw new InvalidOperationException("tensor work must run on the torch worker, not on the Orleans scheduler");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        int dim = model.Config.Dim, count = group[0].Count, rows = group.Length;
        var slots = new int[rows];
        for (int b = 0; b < rows; b++)
        {
            slots[b] = group[b].Slot;
            if (group[b].Request.StartPosition == 0) cache.Clear(slots[b]);
        }
        using var batch = AttentionBatch.ForCache(model.Config, model.Rope, cache, slots, Enumerable.Repeat(count, rows).ToArray(), model.Device);
        bool wantTaps = group.Any(p => p.Request.WantTaps);
        var layerTaps = wantTaps ? new List<Tensor>() : null;
        Tensor h;
        if (first)
        {
            h = model.Embed(model.PadTokens(group.Select(p => (IReadOnlyList<int>)p.Request.Tokens!).ToArray(), count));
            layerTaps?.Add(h); // h_0
        }
        else
        {
            var input = new float[rows * count * dim];
            for (int b = 0; b < rows; b++) group[b].Request.Hidden!.Data.CopyTo(input, b * count * dim);
            h = tensor(input, [(long)rows, count, dim]).to(model.DType, model.Device);
        }
        var hook = group[0].Request.Edge is null ? null : new RemoteLayerHook(grains, group.Select(p => p.Request).ToArray(), model.Config);
        h = model.RunLayers(h, batch, from, to, hook, layerTaps);
        batch.Commit();

        var lastRows = tensor(Enumerable.Range(0, rows).Select(b => (long)b * count + count - 1).ToArray(), device: model.Device);
        Tensor AtLast(Tensor x) => x.reshape(-1, dim).index_select(0, lastRows); // [rows, dim]
        float[]? taps = null;
        int tapRows = layerTaps?.Count ?? 0;
        if (layerTaps is not null) // [rows, taps, dim]: each row's residual stream after each layer, at its last position
            taps = stack(layerTaps.Select(AtLast).ToArray(), 1).to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        Activations? TapsOf(int b) => taps is not null && group[b].Request.WantTaps
            ? new Activations(taps.AsSpan(b * tapRows * dim, tapRows * dim).ToArray(), [tapRows, dim])
            : null;

        var results = new ShardStepResult[rows];
        if (last)
        {
            var normed = model.FinalNorm.Forward(AtLast(h)); // n: what the LM head reads, and the gate
            var logits = model.HeadLogits(normed).cpu().contiguous().data<float>().ToArray();
            var normedData = wantTaps ? normed.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray() : null;
            int vocab = model.Config.VocabSize;
            for (int b = 0; b < rows; b++)
            {
                var n = normedData is not null && group[b].Request.WantTaps ? normedData.AsSpan(b * dim, dim).ToArray() : null;
                results[b] = new ShardStepResult(false, null, logits.AsSpan(b * vocab, vocab).ToArray(), TapsOf(b), n, hook?.Usage(b));
            }
            return results;
        }
        var data = h.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        int size = count * dim;
        for (int b = 0; b < rows; b++)
            results[b] = new ShardStepResult(false, new Activations(data.AsSpan(b * size, size).ToArray(), [count, dim]), null, TapsOf(b), Edge: hook?.Usage(b));
        return results;
    }

    private int Touch((LinkedListNode<string> Node, int Slot) entry)
    {
        _recent.Remove(entry.Node);
        _recent.AddFirst(entry.Node);
        return entry.Slot;
    }

    /// <summary>A slot for a new session: a free one, else the least recently used session's that is in no batch; -1 if none.</summary>
    private int Acquire(string session)
    {
        if (!_freeSlots.TryPop(out int slot))
        {
            var victim = _recent.Last;
            while (victim is not null && _pinned.Contains(victim.Value)) victim = victim.Previous;
            if (victim is null) return -1;
            _recent.Remove(victim);
            slot = _sessions[victim.Value].Slot;
            _sessions.Remove(victim.Value);
            _evictions++;
            metrics.Eviction();
        }
        _sessions[session] = (_recent.AddFirst(session), slot);
        return slot;
    }

    private void Free(string session)
    {
        if (_sessions.Remove(session, out var held))
        {
            _recent.Remove(held.Node);
            _freeSlots.Push(held.Slot);
        }
    }
}
