namespace Spa.Grains;

/// <summary>The base model a silo serves. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class SpaModelOptions
{
    public const string Section = "Spa:Model";

    /// <summary>A llama2.c .bin file, a directory holding one, or a Hugging Face directory.</summary>
    public string ModelPath { get; set; } = "";

    /// <summary>The name clients use (shard keys start with it); empty: the file or directory name of <see cref="ModelPath"/>.</summary>
    public string ModelName { get; set; } = "";

    /// <summary>Shards a session uses when its request does not say.</summary>
    public int Shards { get; set; } = 1;

    /// <summary>Memory for the KV caches of one shard grain; it holds as many session slots as fit, and at least one.</summary>
    public long KvCacheBytesPerShard { get; set; } = 256L * 1024 * 1024;

    /// <summary>
    /// How long a shard grain collects concurrent step requests of different sessions before it runs them as one forward
    /// (0: only those already queued). It stops waiting earlier once every session that recently stepped on it is in.
    /// </summary>
    public double BatchWindowMs { get; set; } = 2.0;

    /// <summary>The most step requests a shard grain runs in one forward (it is also bounded by its session slots).</summary>
    public int MaxBatch { get; set; } = 64;

    /// <summary>
    /// Publish every token on the Orleans stream spa-tokens/{sessionId}. It costs a stream message per token, sent
    /// while the next token is in the shards, but on the same Orleans threads (BENCHMARKS.md, where the cluster's
    /// per-token time goes); a deployment whose clients only read the HTTP responses may turn it off.
    /// </summary>
    public bool PublishTokens { get; set; } = true;

    /// <summary>
    /// Sum where each token's time goes on its way through the session and the shards (<see cref="Sessions.TokenPathProfile"/>,
    /// read by <c>spa bench cluster</c>): a few timestamps a token, and the shards' timings on each step's answer.
    /// </summary>
    public bool ProfileTokenPath { get; set; }

    public string Device { get; set; } = "cpu";
    public string DType { get; set; } = "float32";

    /// <summary>Torch intra-op threads (0: automatic, see <see cref="Spa.Model.ModelOptions"/>).</summary>
    public int Threads { get; set; }

    /// <summary>
    /// Map the checkpoint file into memory instead of reading it; null: for models of 50M parameters or more
    /// (<see cref="Spa.Model.ModelOptions.MapsWeights"/>). Silos of one node that map the same file share its pages.
    /// </summary>
    public bool? MapWeights { get; set; }

    /// <summary>
    /// Ask Linux for transparent huge pages for the weights read into memory and the KV caches
    /// (<see cref="Spa.Model.HugePages"/>); false where the kernel's huge-page compaction stalls more than it saves.
    /// </summary>
    public bool HugePages { get; set; } = true;

    public string EffectiveModelName =>
        !string.IsNullOrWhiteSpace(ModelName) ? ModelName
        : Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(ModelPath));
}
