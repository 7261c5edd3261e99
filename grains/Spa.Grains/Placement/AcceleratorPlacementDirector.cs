using Microsoft.Extensions.Logging;
using Orleans.Runtime.Placement;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Placement;

/// <summary>
/// Puts shard k of N (read from the grain's <see cref="ShardKey"/>) on slot k of the <see cref="AcceleratorLayout"/> of
/// the silos compatible with the grain. Every silo computes the same layout from the same membership and metadata, so
/// whichever silo places a shard picks the same target.
/// </summary>
public sealed class AcceleratorPlacementDirector(ClusterAccelerators accelerators, ILogger<AcceleratorPlacementDirector> logger) : IPlacementDirector
{
    public async Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var key = target.GrainIdentity.Key.ToString()!;
        var (_, shard, _) = ShardKey.Parse(key);
        var layout = await accelerators.LayoutAsync(context.GetCompatibleSilos(target));
        var slot = layout.SlotFor(shard);
        logger.LogInformation("placing {Key} on {Slot} ({Slots} accelerators{Fallback})",
            key, slot, layout.Slots.Count, layout.CpuFallback ? ", none advertised: one CPU per silo" : "");
        return slot.Silo;
    }
}
