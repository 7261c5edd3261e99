namespace Spa.Grains.Abstractions;

/// <summary>
/// Layers [a_k, b_k) of a base model, shard k of N. Key: "{model}/shard-{k}-of-{N}" (see <see cref="ShardKey"/>).
/// Shard 0 also embeds the tokens; the last shard also applies the final norm and the LM head.
/// </summary>
[Alias("spa.IBaseModelShardGrain")]
public interface IBaseModelShardGrain : IGrainWithStringKey
{
    [Alias("Step")]
    ValueTask<ShardStepResult> Step(ShardStepRequest request);

    [Alias("Describe")]
    ValueTask<ShardDescription> Describe();

    [Alias("GetStats")]
    ValueTask<ShardStats> GetStats();

    /// <summary>Frees the session's KV-cache slot, if the shard holds one.</summary>
    [Alias("Release")]
    ValueTask Release(string sessionId);
}

/// <summary>Builds and parses shard grain keys: "{model}/shard-{k}-of-{N}".</summary>
public static class ShardKey
{
    public static string Format(string model, int shard, int shardCount) => $"{model}/shard-{shard}-of-{shardCount}";

    public static (string Model, int Shard, int ShardCount) Parse(string key)
    {
        int slash = key.LastIndexOf('/');
        var tail = slash < 0 ? "" : key[(slash + 1)..];
        var parts = tail.Split('-');
        if (slash <= 0 || parts.Length != 4 || parts[0] != "shard" || parts[2] != "of"
            || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, null, out int shard)
            || !int.TryParse(parts[3], System.Globalization.NumberStyles.None, null, out int count)
            || count <= 0 || shard >= count)
            throw new ArgumentException($"'{key}' is not a shard key: expected '{{model}}/shard-{{k}}-of-{{N}}' with 0 <= k < N");
        return (key[..slash], shard, count);
    }
}
