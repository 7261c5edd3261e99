using TorchSharp;
using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// One forward pass over a batch of sequences: where each new token sits, which keys it may see, and where its keys
/// and values go. Built once per forward and shared by every layer.
/// It owns its tensors (they live outside any dispose scope) and frees them when disposed.
/// Two kinds: <see cref="ForCache"/> appends new tokens to sequences held in a <see cref="KvCache"/>;
/// <see cref="Causal"/> runs whole padded sequences with no cache (training, teacher forcing, reference checks).
/// </summary>
public sealed class AttentionBatch : IDisposable
{
    private readonly KvCache? _cache;
    private readonly int[] _slots;
    private readonly int[] _newCounts;
    private readonly Tensor? _slotIndex;     // [B] slots to gather keys from; null when the batch is every slot in order
    private readonly Tensor? _storeSlot;     // [N] slot of each real new token
    private readonly Tensor? _storePosition; // [N] position of each real new token
    private readonly Tensor? _realTokens;    // [N] flat index into B*T of each real token; null when none is padding
    private readonly int _keyLength;

    private AttentionBatch(RotaryEmbedding rope, KvCache? cache, int[] slots, int[] newCounts, Tensor positions, Tensor mask,
        Tensor? slotIndex, Tensor? storeSlot, Tensor? storePosition, Tensor? realTokens, int keyLength)
    {
        var (cos, sin) = rope.At(positions);
        RopeCos = cos.DetachFromDisposeScope();
        RopeSin = sin.DetachFromDisposeScope();
        _cache = cache;
        _slots = slots;
        _newCounts = newCounts;
        Positions = positions;
        Mask = mask;
        _slotIndex = slotIndex;
        _storeSlot = storeSlot;
        _storePosition = storePosition;
        _realTokens = realTokens;
        _keyLength = keyLength;
    }

    /// <summary>[B, T] int64 position of every (padded) new token.</summary>
    public Tensor Positions { get; }

    /// <summary>[B, T, 1, headDim] rotary cosines and sines at each new token's position, shared by every layer.</summary>
    public Tensor RopeCos { get; }
    public Tensor RopeSin { get; }

    /// <summary>[B, 1, groups*T, keyLength] bool: true where a query may attend to a key.</summary>
    public Tensor Mask { get; }

    public int BatchSize => _newCounts.Length;
    public int NewLength => (int)Positions.shape[1];
    public IReadOnlyList<int> NewCounts => _newCounts;

    /// <summary>Appends newCounts[i] tokens to the sequence in slot slots[i]; the caller commits after every layer ran.</summary>
    public static AttentionBatch ForCache(LlamaConfig config, RotaryEmbedding rope, KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<int> newCounts, Device device)
    {
        int batch = slots.Count;
        if (batch == 0 || newCounts.Count != batch) throw new ArgumentException("one new-token count per slot is needed");
        if (slots.Distinct().Count() != batch) throw new ArgumentException("a slot appears twice in one batch");
        int newLength = newCounts.Max();
        var past = new long[batch];
        int keyLength = 0;
        for (int b = 0; b < batch; b++)
        {
            if (slots[b] < 0 || slots[b] >= cache.Slots) throw new ArgumentOutOfRangeException(nameof(slots), $"slot {slots[b]} is outside 0..{cache.Slots - 1}");
            if (newCounts[b] <= 0) throw new ArgumentException("every sequence in a batch needs at least one new token");
            past[b] = cache.Length(slots[b]);
            int total = (int)past[b] + newCounts[b];
            if (total > cache.Capacity)
                throw new ContextOverflowException($"the sequence would reach {total} tokens, beyond the context of {cache.Capacity}");
            keyLength = Math.Max(keyLength, total);
        }

        using var scope = NewDisposeScope();
        var pastTensor = tensor(past, device: device).unsqueeze(1);                  // [B, 1]
        var offsets = arange(newLength, dtype: ScalarType.Int64, device: device).unsqueeze(0); // [1, T]
        var positions = pastTensor + offsets;                                      // [B, T]
        var keys = arange(keyLength, dtype: ScalarType.Int64, device: device);    // [L]
        var mask = keys.view(1, 1, -1) <= positions.unsqueeze(2);                 // [B, T, L] causal over the whole sequence

        var storeSlot = new List<long>();
        var storePosition = new List<long>();
        var realTokens = new List<long>();
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < newCounts[b]; t++)
            {
                storeSlot.Add(slots[b]);
                storePosition.Add(past[b] + t);
                realTokens.Add((long)b * newLength + t);
            }
        bool padded = realTokens.Count != batch * newLength;
        bool everySlotInOrder = batch == cache.Slots && slots.Select((s, i) => s == i).All(x => x);

        return new AttentionBatch(
            rope, cache, [.. slots], [.. newCounts],
            positions.DetachFromDisposeScope(),
            ExpandForGroups(mask, config).DetachFromDisposeScope(),
            everySlotInOrder ? null : tensor(slots.Select(s => (long)s).ToArray(), device: device).DetachFromDisposeScope(),
            tensor(storeSlot.ToArray(), device: device).DetachFromDisposeScope(),
            tensor(storePosition.ToArray(), device: device).DetachFromDisposeScope(),
            padded ? tensor(realTokens.ToArray(), device: device).DetachFromDisposeScope() : null,
            keyLength);
    }

    /// <summary>Whole sequences from position 0, right-padded to T; lengths[b] tokens of row b are real.</summary>
    public static AttentionBatch Causal(LlamaConfig config, RotaryEmbedding rope, IReadOnlyList<int> lengths, int newLength, Device device)
    {
        if (lengths.Any(n => n <= 0 || n > newLength)) throw new ArgumentException("every length must be in 1..T");
        if (newLength > config.MaxSeqLen)
            throw new ContextOverflowException($"a sequence of {newLength} tokens is beyond the context of {config.MaxSeqLen}");
        using var scope = NewDisposeScope();
        var positions = arange(newLength, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(lengths.Count, newLength).contiguous();
        var causal = positions.unsqueeze(2) >= positions.unsqueeze(1);                               // [B, T, T]
        var keyIsReal = positions.unsqueeze(1) < tensor(lengths.Select(n => (long)n).ToArray(), device: device).view(-1, 1, 1);
        var mask = causal & keyIsReal;
        return new AttentionBatch(rope, null, [], [.. lengths], positions.DetachFromDisposeScope(),
            ExpandForGroups(mask, config).DetachFromDisposeScope(), null, null, null, null, newLength);
    }

    // Queries are grouped as [B, kvHeads, groups*T, headDim] so that each key/value head serves its query heads without
    // being copied; the mask follows the same layout.
    private static Tensor ExpandForGroups(Tensor mask, LlamaConfig config)
    {
        int groups = config.Heads / config.KvHeads;
        long b = mask.shape[0], t = mask.shape[1], l = mask.shape[2];
        return mask.unsqueeze(1).expand(b, groups, t, l).reshape(b, 1, groups * t, l);
    }

    /// <summary>
    /// Stores this batch's new keys and values (when there is a cache) and returns every key and value each query may
    /// need. newKeys, newValues: [B, T, kvHeads, headDim]. Returns [B, kvHeads, keyLength, headDim] each.
    /// </summary>
    internal (Tensor Keys, Tensor Values) KeysAndValues(int layer, Tensor newKeys, Tensor newValues)
    {
        if (_cache is null) return (newKeys.transpose(1, 2), newValues.transpose(1, 2));

        var keys = _cache.Keys(layer);
        var values = _cache.Values(layer);
        keys.index_put_(RealTokens(newKeys), [_storeSlot!, _storePosition!]);
        values.index_put_(RealTokens(newValues), [_storeSlot!, _storePosition!]);
        return (Gather(keys).transpose(1, 2), Gather(values).transpose(1, 2));
    }

    private Tensor RealTokens(Tensor perToken)
    {
        var flat = perToken.reshape(-1, perToken.shape[2], perToken.shape[3]); // [B*T, kvHeads, headDim]
        return _realTokens is null ? flat : flat.index_select(0, _realTokens);
    }

    private Tensor Gather(Tensor stored)
    {
        var prefix = stored.narrow(1, 0, _keyLength);
        return _slotIndex is null ? prefix : prefix.index_select(0, _slotIndex);
    }

    /// <summary>Records the new tokens as part of their sequences once every layer of this cache has stored them.</summary>
    public void Commit()
    {
        if (_cache is null) return;
        for (int b = 0; b < _slots.Length; b++) _cache.Advance(_slots[b], _newCounts[b]);
    }

    public void Dispose()
    {
        Positions.Dispose();
        RopeCos.Dispose();
        RopeSin.Dispose();
        Mask.Dispose();
        _slotIndex?.Dispose();
        _storeSlot?.Dispose();
        _storePosition?.Dispose();
        _realTokens?.Dispose();
    }
}

/// <summary>A sequence would grow beyond the model's context (or its cache's capacity).</summary>
public sealed class ContextOverflowException(string message) : Exception(message);
