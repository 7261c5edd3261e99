using Orleans.Placement;

namespace Spa.Grains.Placement;

/// <summary>Marks a grain whose key is a <see cref="ShardKey"/> for <see cref="AcceleratorPlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class AcceleratorPlacementAttribute() : PlacementAttribute(new AcceleratorPlacement());
