namespace Spa.Grains.Placement;

/// <summary>
/// Places shard k of N on the k-th accelerator, modulo their count, of the silos that advertise accelerators in their
/// silo metadata (<see cref="AcceleratorMetadata.Key"/>); <see cref="AcceleratorPlacementDirector"/> decides.
/// </summary>
public sealed class AcceleratorPlacement : PlacementStrategy;
