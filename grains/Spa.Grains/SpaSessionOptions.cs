using Spa.Grains.Storage;

namespace Spa.Grains;

/// <summary>How sessions keep their state and ride out a dead silo. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class SpaSessionOptions
{
    public const string Section = "Spa:Sessions";

    /// <summary>
    /// Write the session to grain storage after every this many tokens (and at the end of each call). 1: a silo that
    /// dies loses no token. More: fewer writes, and after a silo loss the unwritten tokens are generated again, the same
    /// ones (greedy, or sampled from the seed: the sampler is rebuilt from seed and history), at the cost of their time.
    /// 0: only at the end of each call, so a dead silo takes all the tokens of the call it was running.
    /// </summary>
    public int PersistEveryTokens { get; set; } = 1;

    /// <summary>How long a released session's history stays readable and resumable after its last call.</summary>
    public double RetentionMinutes { get; set; } = 60;

    /// <summary>
    /// How long a call keeps being tried again after a silo loss before it fails: a session's call to a shard whose silo
    /// died, and the HTTP endpoint's resuming of a session whose silo died.
    /// </summary>
    public double RetrySeconds { get; set; } = 60;

    /// <summary>
    /// How long a session's activation and its token stream's state (the pulling agent's per-stream state and the
    /// stream's pub-sub rendezvous activation) stay in memory after their last use. Every request has its own session
    /// and stream, so this bounds what a sustained load holds; Orleans' defaults (15 minutes for activations, 30 for
    /// streams) held tens of thousands. A finished session's history stays in storage for <see cref="RetentionMinutes"/>,
    /// and a later call reactivates it.
    /// </summary>
    public double IdleLifetimeMinutes { get; set; } = 2;

    /// <summary>
    /// How long a published token stays in its stream's queue cache, from which subscribers are served and can rewind to
    /// an earlier token. Then it is dropped, whether or not newer tokens have come. Orleans' default keeps a token until
    /// the cache holds tokens 30 minutes newer, so after a load the last 30 minutes of every session's tokens stayed in
    /// memory (docs/reliability.md, soak); this window costs the token rate times its length. A subscriber that falls
    /// further behind than this misses tokens.
    /// </summary>
    public double TokenCacheSeconds { get; set; } = 60;

    /// <summary>
    /// How many grain locations each silo caches (Orleans' grain directory cache, least recently used first out). Every
    /// request has its own session grain and token stream, so the cache gains about two entries per completion (the
    /// session's and its stream rendezvous'), about one of which outlives its activation until the cache is full.
    /// Orleans' default of 1,000,000 entries is 230-300 MB at the 230-300 bytes an entry took in our heap dumps
    /// (docs/reliability.md, soak). The default, 100,000, still holds the locations of far more live sessions than a
    /// silo runs at once; a location not in the cache is looked up again in the directory.
    /// </summary>
    public int DirectoryCacheEntries { get; set; } = 100_000;

    /// <summary>
    /// The format sessions, devices and stream subscriptions are written in; both are always read
    /// (<see cref="StoredStateSerializer"/>). Binary, the default, costs a fraction of JSON's CPU on every token's write.
    /// Json is for versions that wrote only JSON, which cannot read the binary format: while silos of one still run in the
    /// cluster (a rolling upgrade), and for as long as the cluster may roll back to one.
    /// </summary>
    public StoredStateFormat StateFormat { get; set; } = StoredStateFormat.Binary;

    public TimeSpan Retention => TimeSpan.FromMinutes(RetentionMinutes);

    public TimeSpan Retry => TimeSpan.FromSeconds(RetrySeconds);

    public TimeSpan IdleLifetime => TimeSpan.FromMinutes(IdleLifetimeMinutes);

    public TimeSpan TokenCache => TimeSpan.FromSeconds(TokenCacheSeconds);

    public void Validate()
    {
        if (PersistEveryTokens < 0) throw new ArgumentException($"{Section}:PersistEveryTokens must not be negative, got {PersistEveryTokens}");
        if (!(RetentionMinutes > 0)) throw new ArgumentException($"{Section}:RetentionMinutes must be positive, got {RetentionMinutes}");
        if (!(RetrySeconds > 0)) throw new ArgumentException($"{Section}:RetrySeconds must be positive, got {RetrySeconds}");
        if (!(IdleLifetimeMinutes > 0)) throw new ArgumentException($"{Section}:IdleLifetimeMinutes must be positive, got {IdleLifetimeMinutes}");
        if (!(TokenCacheSeconds > 0)) throw new ArgumentException($"{Section}:TokenCacheSeconds must be positive, got {TokenCacheSeconds}");
        if (DirectoryCacheEntries <= 0) throw new ArgumentException($"{Section}:DirectoryCacheEntries must be positive, got {DirectoryCacheEntries}");
    }
}
