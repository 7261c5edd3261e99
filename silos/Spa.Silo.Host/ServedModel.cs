using System.Text;
using Spa.Grains;
using Spa.Grains.Abstractions;
using Spa.Model.Checkpoints;
using Spa.Model.Tokenizers;

namespace Spa.Silo;

/// <summary>
/// What the HTTP side needs to know about the served model: its name, tokenizer and context. Filled in by
/// <see cref="ModelWarmup"/> once the silo is up and every shard grain has described itself; until then
/// <see cref="IsReady"/> is false and the host answers 503.
/// </summary>
public sealed class ServedModel
{
    private volatile bool _ready;

    public string Name { get; private set; } = "";
    public int Shards { get; private set; }
    public ITokenizer Tokenizer { get; private set; } = null!;
    public ShardDescription Description { get; private set; } = null!;
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public bool IsReady => _ready;

    /// <summary>Why the model could not be made ready, or null.</summary>
    public string? Failure { get; private set; }

    public int ContextLength => Description.MaxSequenceLength;

    /// <summary>The most UTF-8 bytes of text one token stands for (a byte token counts as its display form, more than its byte).</summary>
    public int MaxPieceBytes { get; private set; }

    /// <summary>The longest prompt, in UTF-8 bytes, that could fit the context: longer ones are refused before tokenizing.</summary>
    public long MaxPromptBytes => (long)ContextLength * MaxPieceBytes;

    /// <summary>KV-cache bytes one token of a session takes on the shard with the most layers.</summary>
    public long KvBytesPerToken { get; private set; }

    internal void SetReady(string name, int shards, ITokenizer tokenizer, ShardDescription description, long kvBytesPerToken)
    {
        (Name, Shards, Tokenizer, Description, KvBytesPerToken) = (name, shards, tokenizer, description, kvBytesPerToken);
        MaxPieceBytes = Enumerable.Range(0, tokenizer.VocabSize).Max(id => Encoding.UTF8.GetByteCount(tokenizer.TokenText(id)));
        _ready = true;
    }

    internal void SetFailed(string reason) => Failure = reason;
}

/// <summary>
/// Runs after the silo has started: loads the model (once per process, through <see cref="ModelHost"/>) and its
/// tokenizer, and asks every shard grain to describe itself, which activates the shards. A failure stops the host.
/// </summary>
internal sealed class ModelWarmup(
    ModelHost modelHost, IGrainFactory grains, ServedModel served, IHostApplicationLifetime lifetime,
    ILogger<ModelWarmup> logger, Announcer announcer) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var options = modelHost.Options;
            var name = modelHost.ModelName;
            int shards = options.Shards;
            var model = await modelHost.GetModelAsync(name);
            var tokenizerPath = CheckpointLoader.FindTokenizer(options.ModelPath)
                ?? throw new FileNotFoundException($"no tokenizer beside the model {options.ModelPath} (expected tokenizer.model, tokenizer.bin or tok*.bin)");
            var tokenizer = TokenizerLoader.Load(tokenizerPath, model.Config.VocabSize);
            var descriptions = await Task.WhenAll(Enumerable.Range(0, shards)
                .Select(k => grains.GetGrain<IBaseModelShardGrain>(ShardKey.Format(name, k, shards)).Describe().AsTask()));
            int largest = descriptions.Max(d => d.EndLayer - d.FirstLayer);
            served.SetReady(name, shards, tokenizer, descriptions[^1], ModelHost.KvBytesPerToken(model.Config, model.DType, largest));
            announcer.Say($"Serving {name} ({descriptions[^1].Layers} layers in {shards} shard(s), context {descriptions[^1].MaxSequenceLength}).");
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            served.SetFailed(e.Message);
            logger.LogCritical(e, "the model could not be loaded: {Reason}", e.Message);
            Environment.ExitCode = 1;
            lifetime.StopApplication();
        }
    }
}
