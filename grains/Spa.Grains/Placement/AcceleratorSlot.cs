namespace Spa.Grains.Placement;

/// <summary>One accelerator of one silo: the place of one shard.</summary>
public sealed record AcceleratorSlot(SiloAddress Silo, string Accelerator)
{
    public override string ToString() => $"{Accelerator} on {Silo}";
}
