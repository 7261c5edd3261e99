namespace Spa.Grains.Placement;

/// <summary>
/// The accelerators of a set of silos in placement order: by silo address, then by accelerator
/// (<see cref="AcceleratorMetadata.Compare"/>). Shard k of N goes to slot k modulo the slot count, so shards spread one
/// per accelerator across silos. When no silo advertises an accelerator, each silo's CPU is its one slot.
/// </summary>
public sealed class AcceleratorLayout
{
    private AcceleratorLayout(IReadOnlyList<AcceleratorSlot> slots, bool cpuFallback) => (Slots, CpuFallback) = (slots, cpuFallback);

    public IReadOnlyList<AcceleratorSlot> Slots { get; }

    /// <summary>True when no silo advertised an accelerator and every silo counts its CPU.</summary>
    public bool CpuFallback { get; }

    /// <param name="silos">Each silo with the accelerators it advertises (empty: none).</param>
    public static AcceleratorLayout Build(IEnumerable<(SiloAddress Silo, IReadOnlyList<string> Accelerators)> silos)
    {
        var ordered = silos.OrderBy(s => s.Silo, SiloOrder.Instance).ToList();
        if (ordered.Count == 0) throw new InvalidOperationException("there is no silo to place a shard on");
        var slots = ordered.SelectMany(s => s.Accelerators.Order(Comparer<string>.Create(AcceleratorMetadata.Compare))
            .Select(a => new AcceleratorSlot(s.Silo, a))).ToList();
        return slots.Count > 0
            ? new AcceleratorLayout(slots, cpuFallback: false)
            : new AcceleratorLayout([.. ordered.Select(s => new AcceleratorSlot(s.Silo, AcceleratorMetadata.Cpu))], cpuFallback: true);
    }

    public AcceleratorSlot SlotFor(int shard) => Slots[shard % Slots.Count];

    /// <summary>
    /// The accelerator shard <paramref name="shard"/> uses on <paramref name="silo"/>: its slot when the slot is there;
    /// otherwise (the layout changed since the shard was placed) one of that silo's slots by the same modulo rule, or its
    /// CPU when it has none. <paramref name="asPlaced"/> tells which.
    /// </summary>
    public string AcceleratorOn(SiloAddress silo, int shard, out bool asPlaced)
    {
        var slot = SlotFor(shard);
        asPlaced = slot.Silo.Equals(silo);
        if (asPlaced) return slot.Accelerator;
        var local = Slots.Where(s => s.Silo.Equals(silo)).ToList();
        return local.Count > 0 ? local[shard % local.Count].Accelerator : AcceleratorMetadata.Cpu;
    }

    /// <summary>
    /// Endpoint first (address bytes, then port), generation last, so a silo restarted on the same endpoint keeps its
    /// place; Orleans' own order compares the generation first.
    /// </summary>
    private sealed class SiloOrder : IComparer<SiloAddress>
    {
        public static readonly SiloOrder Instance = new();

        public int Compare(SiloAddress? x, SiloAddress? y)
        {
            if (x is null || y is null) return x is null ? (y is null ? 0 : -1) : 1;
            var (a, b) = (x.Endpoint, y.Endpoint);
            int c = a.Address.GetAddressBytes().AsSpan().SequenceCompareTo(b.Address.GetAddressBytes());
            if (c != 0) return c;
            c = a.Port.CompareTo(b.Port);
            return c != 0 ? c : x.Generation.CompareTo(y.Generation);
        }
    }
}
