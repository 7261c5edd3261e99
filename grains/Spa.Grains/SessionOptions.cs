namespace Spa.Grains;

/// <summary>How sessions keep their state and ride out a dead silo. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class SessionOptions
{
    public const string Section = "Spa:Sessions";

    /// <summary>
    /// Write the session to grain storage after every this many tokens (and at the end of each call). 1: a silo that
    /// dies loses no token. More: fewer writes, and after a silo loss the unwritten tokens are generated again, the same
    /// ones (greedy, or sampled from the seed: the sampler is rebuilt from seed and history), at the cost of their time.
    /// </summary>
    public int PersistEveryTokens { get; set; } = 1;

    /// <summary>How long a released session's history stays readable and resumable after its last call.</summary>
    public double RetentionMinutes { get; set; } = 60;

    /// <summary>How long a session keeps retrying a shard whose silo died before it gives up on the token.</summary>
    public double ShardRetrySeconds { get; set; } = 60;

    public TimeSpan Retention => TimeSpan.FromMinutes(RetentionMinutes);

    public TimeSpan ShardRetry => TimeSpan.FromSeconds(ShardRetrySeconds);

    public void Validate()
    {
        if (PersistEveryTokens < 1) throw new ArgumentException($"{Section}:PersistEveryTokens must be at least 1, got {PersistEveryTokens}");
        if (!(RetentionMinutes > 0)) throw new ArgumentException($"{Section}:RetentionMinutes must be positive, got {RetentionMinutes}");
        if (!(ShardRetrySeconds > 0)) throw new ArgumentException($"{Section}:ShardRetrySeconds must be positive, got {ShardRetrySeconds}");
    }
}
