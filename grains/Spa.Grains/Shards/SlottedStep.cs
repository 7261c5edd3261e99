using Spa.Grains.Abstractions;

namespace Spa.Grains.Shards;

/// <summary>A session's step through a shard with the KV-cache slot it runs in and its number of new positions.</summary>
internal sealed record SlottedStep(ShardStepRequest Request, int Slot, int Count);
