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
    private readonly CpuAttention.Layout? _cpuLayout; // set when CpuAttention serves this forward
    private readonly Tensor? _slotIndex;     // [B] slots to gather keys from; null when they are one run of consecutive slots
    private readonly int _firstSlot;         // the run's first slot, read in place: a lone sequence's keys are not copied out
    private readonly Tensor? _storeSlot;     // slot of each real new token: [N], or [B, T] when none is padding
    private readonly Tensor? _storePosition; // position of each real new token, shaped as _storeSlot; null when none is padding: Positions
    private readonly TensorIndex[]? _storeIndex; // cache[slot, :, position] for each real new token
    private readonly Tensor? _realTokens;    // [N] flat index into B*T of each real token; null when none is padding
    private readonly int _keyLength;

    private AttentionBatch(RotaryEmbedding rope, KvCache? cache, int[] slots, int[] newCounts, Tensor positions, Tensor? mask,
        Tensor? slotIndex, Tensor? storeSlot, Tensor? storePosition, Tensor? realTokens, int keyLength, CpuAttention.Layout? cpuLayout)
    {
        RopeRotations = rope.At(positions).DetachFromDisposeScope();
        _cache = cache;
        _slots = slots;
        _newCounts = newCounts;
        _cpuLayout = cpuLayout;
        Positions = positions.DetachFromDisposeScope();
        Mask = mask?.DetachFromDisposeScope();
        _slotIndex = slotIndex?.DetachFromDisposeScope();
        _firstSlot = slots.Length > 0 ? slots[0] : 0;
        _storeSlot = storeSlot?.DetachFromDisposeScope();
        _storePosition = storePosition?.DetachFromDisposeScope();
        if (_storeSlot is not null) _storeIndex = [TensorIndex.Tensor(_storeSlot), TensorIndex.Colon, TensorIndex.Tensor(_storePosition ?? Positions)];
        _realTokens = realTokens?.DetachFromDisposeScope();
        _keyLength = keyLength;
    }

    /// <summary>[B, T] int64 position of every (padded) new token.</summary>
    public Tensor Positions { get; }

    /// <summary>[B, T, headDim, headDim] rotary rotation at each new token's position, shared by every layer.</summary>
    public Tensor RopeRotations { get; }

    /// <summary>
    /// [B, 1, groups*T, keyLength] bool: true where a query may attend to a key; null when every query sees every key
    /// (one new token per row and every row as long as the longest), as when a single sequence decodes.
    /// </summary>
    public Tensor? Mask { get; }

    /// <summary>
    /// Whether <see cref="AttendOnCpu"/> serves this forward's layers (see <see cref="CpuAttention.Serves"/>); then no
    /// mask or store indices are built, since the kernel stores and reads the cache itself.
    /// </summary>
    public bool AttendsOnCpu => _cpuLayout is not null;

    public int BatchSize => _newCounts.Length;
    public int NewLength => (int)Positions.size(1);
    public IReadOnlyList<int> NewCounts => _newCounts;

    /// <summary>
    /// Appends newCounts[i] tokens to the sequence in slot slots[i]; the caller commits after every layer ran.
    /// <paramref name="oneCore"/> keeps the attention on the calling thread, for a caller that already spreads the
    /// batch's parts over the cores.
    /// </summary>
    public static AttentionBatch ForCache(LlamaConfig config, RotaryEmbedding rope, KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<int> newCounts, Device device,
        bool oneCore = false)
    {
        int batch = slots.Count;
        var (past, keyLength) = CheckAppend(cache, slots, newCounts);
        int newLength = newCounts.Max();

        if (CpuAttention.Serves(config, device, cache.DType))
        {
            var layout = new CpuAttention.Layout(config.Heads, config.KvHeads, config.HeadDim, cache.Capacity, [.. slots], past, [.. newCounts], newLength, keyLength, oneCore);
            return new AttentionBatch(rope, cache, layout.Slots, layout.Counts, PositionGrid(past, newLength, device), null, null, null, null, null, keyLength, layout);
        }

        var storeSlot = new long[newCounts.Sum()];
        var storePosition = new long[storeSlot.Length];
        var realTokens = new long[storeSlot.Length];
        int n = 0;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < newCounts[b]; t++, n++)
            {
                storeSlot[n] = slots[b];
                storePosition[n] = past[b] + t;
                realTokens[n] = (long)b * newLength + t;
            }
        bool padded = n != batch * newLength;
        bool consecutive = slots.Select((s, i) => s == slots[0] + i).All(x => x);
        // Without padding the store indices take the new tokens' own [B, T] shape, so that keys and values are stored
        // as the projection made them, without a reshape per layer, and the positions are the store positions.
        long[] storeShape = padded ? [n] : [batch, newLength];

        return new AttentionBatch(
            rope, cache, [.. slots], [.. newCounts], PositionGrid(past, newLength, device), VisibilityMask(config, past, newCounts, newLength, keyLength, device),
            consecutive ? null : tensor(slots.Select(s => (long)s).ToArray(), device: device),
            tensor(storeSlot, storeShape, device: device),
            padded ? tensor(storePosition, storeShape, device: device) : null,
            padded ? tensor(realTokens, device: device) : null,
            keyLength, null);
    }

    /// <summary>
    /// Throws unless newCounts[i] tokens can be appended to the sequence in slot slots[i] for every i: one count per
    /// slot, each at least 1, every slot in the cache and named once, every sequence within the cache's capacity.
    /// Returns the tokens each slot holds before them and the longest sequence's length after them.
    /// </summary>
    public static (int[] Past, int KeyLength) CheckAppend(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<int> newCounts)
    {
        int batch = slots.Count;
        if (batch == 0 || newCounts.Count != batch) throw new ArgumentException("one new-token count per slot is needed");
        if (batch > 1 && slots.Distinct().Count() != batch) throw new ArgumentException("a slot appears twice in one batch");
        var past = new int[batch];
        int keyLength = 0;
        for (int b = 0; b < batch; b++)
        {
            if (slots[b] < 0 || slots[b] >= cache.Slots) throw new ArgumentOutOfRangeException(nameof(slots), $"slot {slots[b]} is outside 0..{cache.Slots - 1}");
            if (newCounts[b] <= 0) throw new ArgumentException("every sequence in a batch needs at least one new token");
            past[b] = cache.Length(slots[b]);
            int total = past[b] + newCounts[b];
            if (total > cache.Capacity)
                throw new ContextOverflowException($"the sequence would reach {total} tokens, beyond the context of {cache.Capacity}");
            keyLength = Math.Max(keyLength, total);
        }
        return (past, keyLength);
    }

    /// <summary>Whole sequences from position 0, right-padded to T; lengths[b] tokens of row b are real.</summary>
    public static AttentionBatch Causal(LlamaConfig config, RotaryEmbedding rope, IReadOnlyList<int> lengths, int newLength, Device device)
    {
        if (lengths.Any(n => n <= 0 || n > newLength)) throw new ArgumentException("every length must be in 1..T");
        if (newLength > config.MaxSeqLen)
            throw new ContextOverflowException($"a sequence of {newLength} tokens is beyond the context of {config.MaxSeqLen}");
        var past = new int[lengths.Count];
        return new AttentionBatch(rope, null, [], [.. lengths], PositionGrid(past, newLength, device), VisibilityMask(config, past, lengths, newLength, newLength, device),
            null, null, null, null, newLength, null);
    }

    /// <summary>[B, T] positions for rows that hold past[b] earlier tokens.</summary>
    private static Tensor PositionGrid(int[] past, int newLength, Device device)
    {
        var positions = new long[past.Length * newLength];
        for (int b = 0; b < past.Length; b++)
            for (int t = 0; t < newLength; t++) positions[b * newLength + t] = past[b] + t;
        return tensor(positions, [past.Length, newLength], device: device);
    }

    /// <summary>
    /// Keys that new position t of a row sees, the row holding past earlier tokens and count new ones: every key up to
    /// its own position, and a padding position (t >= count) sees the row's real tokens.
    /// </summary>
    internal static int VisibleKeys(int past, int count, int t) => past + Math.Min(t, count - 1) + 1;

    /// <summary>
    /// Mask [B, 1, groups*T, L] for rows that hold past[b] earlier tokens and counts[b] new ones.
    /// A query sees every key up to its own position, and never a padding position. Queries are grouped as
    /// [B, kvHeads, groups*T, headDim] so that each key/value head serves its query heads without being copied; the
    /// mask follows that layout. Built on the CPU side in one pass: a handful of tensor operations would cost more.
    /// No mask when every query sees every key (see <see cref="Mask"/>).
    /// </summary>
    private static Tensor? VisibilityMask(LlamaConfig config, int[] past, IReadOnlyList<int> counts, int newLength, int keyLength, Device device)
    {
        int batch = past.Length, groups = config.Heads / config.KvHeads;
        if (newLength == 1 && past.All(p => p + 1 == keyLength)) return null;
        var mask = new bool[(long)batch * groups * newLength * keyLength];
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < newLength; t++)
            {
                int visible = VisibleKeys(past[b], counts[b], t);
                for (int g = 0; g < groups; g++)
                    mask.AsSpan((int)(((long)(b * groups + g) * newLength + t) * keyLength), visible).Fill(true);
            }
        }
        return tensor(mask, [batch, 1, groups * newLength, keyLength], device: device);
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
        keys.index_put_(RealTokens(newKeys), _storeIndex!);
        values.index_put_(RealTokens(newValues), _storeIndex!);
        return (Gather(keys), Gather(values));
    }

    /// <summary>
    /// Stores this batch's new keys and values and attends over the cache with <see cref="CpuAttention"/>.
    /// rotated: [B, T, heads + kvHeads, headDim], queries then keys, rotated; projected: [B, T, heads + 2 kvHeads,
    /// headDim], values last. Returns [B, T, heads * headDim].
    /// </summary>
    internal unsafe Tensor AttendOnCpu(int layer, Tensor rotated, Tensor projected)
    {
        var layout = _cpuLayout!.Value;
        var output = empty([BatchSize, layout.NewLength, layout.Heads * layout.HeadDim], ScalarType.Float32);
        fixed (byte* queries = Contiguous(rotated).bytes, values = Contiguous(projected).bytes, written = output.bytes)
            CpuAttention.Attend(layout, (float*)queries, (float*)values, _cache!.KeysAddress(layer), _cache.ValuesAddress(layer), (float*)written);
        return output;
    }

    private static Tensor Contiguous(Tensor t) => t.is_contiguous() ? t : t.contiguous();

    /// <summary>perToken: [B, T, kvHeads, headDim]. Returns the real tokens' rows, shaped as the store indices.</summary>
    private Tensor RealTokens(Tensor perToken) =>
        _realTokens is null ? perToken : perToken.reshape(-1, perToken.shape[2], perToken.shape[3]).index_select(0, _realTokens); // [N, kvHeads, headDim]

    private Tensor Gather(Tensor stored)
    {
        var prefix = stored.narrow(2, 0, _keyLength);
        if (_slotIndex is not null) return prefix.index_select(0, _slotIndex);
        // A batch of every slot from the first (the engine's own cache, one slot per sequence) reads the prefix as it is.
        return _firstSlot == 0 && _slots.Length == _cache!.Slots ? prefix : prefix.narrow(0, _firstSlot, _slots.Length);
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
        RopeRotations.Dispose();
        Mask?.Dispose();
        _slotIndex?.Dispose();
        _storeSlot?.Dispose();
        _storePosition?.Dispose();
        _realTokens?.Dispose();
    }
}

/// <summary>A sequence would grow beyond the model's context (or its cache's capacity).</summary>
public sealed class ContextOverflowException(string message) : Exception(message);
