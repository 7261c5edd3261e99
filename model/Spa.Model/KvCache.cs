using static TorchSharp.torch;

namespace Spa.Model;

/// <summary>
/// Keys and values of past positions for a fixed number of sequence slots. Each slot holds one sequence; slots fill to
/// different lengths, so one forward can decode some sequences while it prefills others.
/// Layout per layer: [slots, kvHeads, capacity, headDim]: the new positions of many sequences are written with one
/// indexed store, and a prefix of positions is already the [B, kvHeads, L, headDim] attention reads.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys;
    private readonly Tensor[] _values;
    private readonly int[] _lengths;
    private readonly IntPtr[] _keyAddresses;   // where each layer's float32 host memory starts, for CpuAttention; zero until asked
    private readonly IntPtr[] _valueAddresses;

    public KvCache(LlamaConfig config, int slots, int capacity, Device device, ScalarType dtype, int firstLayer = 0, int layerCount = -1,
        bool hugePages = false)
    {
        if (slots <= 0) throw new ArgumentOutOfRangeException(nameof(slots), "a cache needs at least one slot");
        if (capacity <= 0 || capacity > config.MaxSeqLen)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"capacity must be in 1..{config.MaxSeqLen}, got {capacity}");
        FirstLayer = firstLayer;
        LayerCount = layerCount < 0 ? config.Layers - firstLayer : layerCount;
        Slots = slots;
        Capacity = capacity;
        _lengths = new int[slots];
        _keys = new Tensor[LayerCount];
        _values = new Tensor[LayerCount];
        _keyAddresses = new IntPtr[LayerCount];
        _valueAddresses = new IntPtr[LayerCount];
        DType = dtype;
        for (int l = 0; l < LayerCount; l++)
        {
            _keys[l] = Zeros([slots, config.KvHeads, capacity, config.HeadDim], dtype, device, hugePages);
            _values[l] = Zeros([slots, config.KvHeads, capacity, config.HeadDim], dtype, device, hugePages);
        }
        Bytes = 2L * LayerCount * _keys[0].NumberOfElements * _keys[0].ElementSize;
    }

    /// <summary>
    /// Zeroed, not just allocated: attention reads the masked positions of shorter slots too, and zero times a masked
    /// weight is zero where garbage could be NaN. Advised as huge pages, if asked, before the zeroing touches them (<see cref="HugePages"/>).
    /// </summary>
    private static Tensor Zeros(long[] shape, ScalarType dtype, Device device, bool hugePages)
    {
        using var scope = NewDisposeScope(); // takes the handle zero_ returns
        var t = empty(shape, dtype, device);
        if (hugePages) HugePages.Advise(t);
        t.zero_();
        return t.DetachFromDisposeScope();
    }

    public int Slots { get; }
    public ScalarType DType { get; }
    public int Capacity { get; }

    /// <summary>The first model layer this cache serves (a shard holds a contiguous range of layers).</summary>
    public int FirstLayer { get; }
    public int LayerCount { get; }

    /// <summary>Memory held by the key and value tensors.</summary>
    public long Bytes { get; }

    public long BytesPerSlot => Bytes / Slots;

    public int Length(int slot) => _lengths[slot];

    public void Clear(int slot) => _lengths[slot] = 0;

    /// <summary>
    /// Raised by <see cref="CopySlot"/> with (from, to), so that whoever keeps state per sequence beside the cache (a
    /// plugin's gate policy, say) can fork it with the sequence.
    /// </summary>
    public event Action<int, int>? SlotCopied;

    /// <summary>Makes slot <paramref name="to"/> a copy of slot <paramref name="from"/> (beam search forks this way).</summary>
    public void CopySlot(int from, int to)
    {
        if (from == to) return;
        SlotCopied?.Invoke(from, to);
        int length = _lengths[from];
        if (length > 0)
        {
            for (int l = 0; l < LayerCount; l++)
            {
                _keys[l][to].narrow(1, 0, length).copy_(_keys[l][from].narrow(1, 0, length));
                _values[l][to].narrow(1, 0, length).copy_(_values[l][from].narrow(1, 0, length));
            }
        }
        _lengths[to] = length;
    }

    internal Tensor Keys(int layer) => _keys[layer - FirstLayer];
    internal Tensor Values(int layer) => _values[layer - FirstLayer];

    /// <summary>A float32 host layer's keys, [slots, kvHeads, capacity, headDim]: host tensors do not move while they live.</summary>
    internal unsafe float* KeysAddress(int layer) => (float*)Address(_keys, _keyAddresses, layer - FirstLayer);
    internal unsafe float* ValuesAddress(int layer) => (float*)Address(_values, _valueAddresses, layer - FirstLayer);

    private static IntPtr Address(Tensor[] tensors, IntPtr[] addresses, int index)
    {
        if (addresses[index] == IntPtr.Zero) addresses[index] = tensors[index].storage<float>().data_ptr();
        return addresses[index];
    }

    internal void Advance(int slot, int count) => _lengths[slot] += count;

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
