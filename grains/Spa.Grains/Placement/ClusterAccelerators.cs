using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace Spa.Grains.Placement;

/// <summary>
/// The accelerator layout of the cluster as this silo sees it, from Orleans' silo metadata cache. Registered as a
/// singleton by <see cref="SpaGrainsHosting.AddAcceleratorPlacement"/>.
/// </summary>
public sealed class ClusterAccelerators(
    ISiloMetadataCache metadata,
    IClusterMembershipService membership,
    ILocalSiloDetails localSilo,
    IOptions<AcceleratorOptions> options,
    ILogger<ClusterAccelerators> logger)
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// The layout of <paramref name="silos"/>. The cache learns a silo's metadata shortly after the silo joins and
    /// tells no one when it does, so this polls until every silo is known or <see cref="AcceleratorOptions.MetadataTimeout"/>
    /// has passed: a shard placed in between would otherwise skip a silo that is about to advertise.
    /// </summary>
    public async Task<AcceleratorLayout> LayoutAsync(IReadOnlyCollection<SiloAddress> silos, CancellationToken cancellationToken = default)
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(options.Value.MetadataTimeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var known = silos.Select(s => (Silo: s, Value: metadata.GetSiloMetadata(s).Metadata.GetValueOrDefault(AcceleratorMetadata.Key))).ToList();
            var missing = known.Where(k => k.Value is null).Select(k => k.Silo).ToList();
            if (missing.Count == 0 || Stopwatch.GetTimestamp() >= deadline)
            {
                if (missing.Count > 0)
                    logger.LogWarning("no '{Key}' silo metadata from {Silos} after {Timeout}: they count as offering no accelerator (do they call AddAcceleratorPlacement?)",
                        AcceleratorMetadata.Key, string.Join(", ", missing), options.Value.MetadataTimeout);
                return AcceleratorLayout.Build(known.Select(k => (k.Silo, k.Value is null ? [] : AcceleratorMetadata.Parse(k.Value))));
            }
            await Task.Delay(Poll, cancellationToken);
        }
    }

    /// <summary>
    /// The accelerator shard <paramref name="shard"/> was given on this silo, from the layout of the active silos (the
    /// one the director used, unless membership changed since).
    /// </summary>
    public async Task<string> AcceleratorForAsync(int shard, CancellationToken cancellationToken = default)
    {
        var self = localSilo.SiloAddress;
        var active = membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress)
            .Append(self).Distinct().ToList();
        var layout = await LayoutAsync(active, cancellationToken);
        var accelerator = layout.AcceleratorOn(self, shard, out bool asPlaced);
        if (!asPlaced)
            logger.LogWarning("shard {Shard} is on {Silo}, but the current layout puts it on {Slot}; it takes {Accelerator} here",
                shard, self, layout.SlotFor(shard), accelerator);
        return accelerator;
    }
}
