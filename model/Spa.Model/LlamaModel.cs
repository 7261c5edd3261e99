using Spa.Model.Checkpoints;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Spa.Model;

/// <summary>
/// A LLaMA-family decoder: embedding, L pre-norm blocks, final RMSNorm and LM head (tied to the embedding or not).
/// Inference only; parameters never require gradients. The pieces are public so that a caller can run a range of
/// layers (a shard) or read the residual stream between layers (the taps a side network consumes).
/// </summary>
public sealed class LlamaModel : ITokenStepper, IDisposable
{
    private readonly List<Tensor> _owned = [];
    private readonly Task<string> _identity;
    private readonly CancellationTokenSource _stopReading;

    /// <summary>A model built from a checkpoint already in memory (the caller keeps and disposes it).</summary>
    public LlamaModel(Checkpoint checkpoint, ModelOptions options)
        : this(checkpoint.Config, checkpoint.Tensors.Values.Sum(t => t.NumberOfElements), options,
            (destinationOf, _) =>
            {
                foreach (var (name, weights) in checkpoint.Tensors) destinationOf(name).copy_(weights);
            },
            _ => Task.FromResult(WeightIdentity.Of(checkpoint)))
    {
    }

    /// <summary>
    /// Builds the model on its weights. Without <paramref name="mapped"/>, every weight is allocated in the serving dtype
    /// and device, and <paramref name="fill"/> writes each one, by its checkpoint name, into its place (q, k and v into
    /// their rows of the stacked projection, gate and up likewise), so no weight is ever held twice. With it, the model
    /// takes the mapped views as they are, q, k and v (gate and up) as separate blocks. The identity may be computed
    /// beside the load, on another thread.
    /// </summary>
    private LlamaModel(LlamaConfig config, long parameterCount, ModelOptions options,
        Action<Func<string, Tensor>, CancellationToken> fill, Func<CancellationToken, Task<string>> identity, Checkpoint? mapped = null)
    {
        if (mapped is not null) _owned.AddRange(mapped.Tensors.Values); // disposed with the model, or below if building fails
        Config = config;
        Mapped = mapped is not null;
        _stopReading = new CancellationTokenSource();
        var stop = _stopReading.Token;
        try
        {
            Config.Validate();
            ParameterCount = parameterCount;
            options.Apply(ParameterCount);
            Device = options.TorchDevice;
            DType = options.ScalarType;
            AdvisesHugePages = options.HugePages;
            _identity = identity(stop);
            using var scope = NewDisposeScope(); // frees the row views handed to fill
            var destinations = new Dictionary<string, Tensor>();
            Tensor Weight(string name, params long[] shape)
            {
                if (mapped is null) return destinations[name] = Allocate(shape);
                var view = mapped.Tensors[name];
                if (!view.shape.SequenceEqual(shape))
                    throw new InvalidDataException($"{mapped.Source}: tensor {name} is [{string.Join(", ", view.shape)}], the model needs [{string.Join(", ", shape)}]");
                return view;
            }
            StackedProjection Stacked(long columns, params (string Name, long Rows)[] blocks)
            {
                if (mapped is not null) return new StackedProjection([.. blocks.Select(b => Weight(b.Name, b.Rows, columns))]);
                var stacked = Allocate(blocks.Sum(b => b.Rows), columns);
                long start = 0;
                foreach (var (name, rows) in blocks)
                {
                    destinations[name] = stacked.narrow(0, start, rows);
                    start += rows;
                }
                return new StackedProjection(stacked);
            }

            long dim = Config.Dim, kv = (long)Config.KvHeads * Config.HeadDim, hidden = Config.HiddenDim;
            Embedding = Weight(WeightNames.Embedding, Config.VocabSize, dim);
            Rope = new RotaryEmbedding(Config, Device, DType);
            var blocks = new DecoderBlock[Config.Layers];
            for (int l = 0; l < Config.Layers; l++)
            {
                blocks[l] = new DecoderBlock(l,
                    new RmsNorm(Weight(WeightNames.AttentionNorm(l), dim), Config.NormEps),
                    new Attention(Config, l, Stacked(dim, (WeightNames.Query(l), dim), (WeightNames.Key(l), kv), (WeightNames.Value(l), kv)),
                        Weight(WeightNames.Output(l), dim, dim), Rope),
                    new RmsNorm(Weight(WeightNames.MlpNorm(l), dim), Config.NormEps),
                    new Mlp(Stacked(dim, (WeightNames.Gate(l), hidden), (WeightNames.Up(l), hidden)), Weight(WeightNames.Down(l), dim, hidden)));
            }
            Blocks = blocks;
            FinalNorm = new RmsNorm(Weight(WeightNames.FinalNorm, dim), Config.NormEps);
            LmHead = Config.TiedEmbedding ? Embedding : Weight(WeightNames.LmHead, Config.VocabSize, dim);
            using (no_grad()) fill(name => destinations[name], stop);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public LlamaConfig Config { get; }

    /// <summary>Every weight tensor the model holds (stacked or mapped as it runs them); frozen unless a caller fine-tunes them.</summary>
    public IReadOnlyList<Tensor> Weights => _owned;

    LlamaModel ITokenStepper.Model => this;

    Tensor ITokenStepper.Step(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens) => Step(cache, slots, newTokens);

    /// <summary>
    /// The weights' content hash (<see cref="WeightIdentity"/>), recorded in every plugin trained on this model. It is
    /// computed beside the load; reading it before then waits, and <see cref="IdentityAsync"/> awaits it.
    /// </summary>
    public string Identity => _identity.GetAwaiter().GetResult();

    public Task<string> IdentityAsync() => _identity;

    /// <summary>Parameters in the checkpoint (the tied LM head counted once).</summary>
    public long ParameterCount { get; }

    /// <summary>Bytes the weights take in the serving dtype.</summary>
    public long WeightBytes => _owned.Sum(w => w.NumberOfElements * w.ElementSize);
    public Device Device { get; }
    public ScalarType DType { get; }
    public Tensor Embedding { get; }
    public RotaryEmbedding Rope { get; }
    public IReadOnlyList<DecoderBlock> Blocks { get; }
    public RmsNorm FinalNorm { get; }
    public Tensor LmHead { get; }

    /// <summary>
    /// Loads a checkpoint (see <see cref="CheckpointLoader"/>): mapped into memory where the options ask for it
    /// (<see cref="ModelOptions.MapsWeights"/>) and the file stores the serving dtype (<see cref="CheckpointLayout.Map"/>),
    /// else read straight into the model's weights.
    /// </summary>
    public static LlamaModel Load(string path, ModelOptions options)
    {
        var layout = CheckpointLoader.Open(path);
        Func<CancellationToken, Task<string>> identity = stop => Task.Run(() => layout.ComputeIdentity(stop), stop);
        var mapped = options.MapsWeights(layout.ParameterCount) ? layout.Map(options.ScalarType) : null;
        return mapped is null
            ? new LlamaModel(layout.Config, layout.ParameterCount, options, layout.ReadInto, identity)
            : new LlamaModel(layout.Config, layout.ParameterCount, options, (_, _) => { }, identity, mapped);
    }

    /// <summary>Whether the weights are views of the checkpoint file mapped into memory (see <see cref="Load"/>).</summary>
    public bool Mapped { get; }

    /// <summary>Whether weights read into memory, and this model's KV caches, are advised as huge pages (<see cref="ModelOptions.HugePages"/>).</summary>
    public bool AdvisesHugePages { get; }

    /// <summary>A cache for this model's layers, sized for <paramref name="slots"/> sequences of up to <paramref name="capacity"/> tokens.</summary>
    public KvCache CreateCache(int slots, int? capacity = null) =>
        new(Config, slots, capacity ?? Config.MaxSeqLen, Device, DType, hugePages: AdvisesHugePages);

    /// <summary>tokens: [B, T] int64. Returns the residual stream h_0: [B, T, dim].</summary>
    public Tensor Embed(Tensor tokens) => Embedding[tokens.to(Device)];

    /// <summary>
    /// Runs layers [from, to) on the residual stream h: [B, T, dim]. When <paramref name="taps"/> is given, the
    /// residual stream after each layer is appended to it; those tensors (the returned one among them) belong to the
    /// caller's dispose scope.
    /// </summary>
    public Tensor RunLayers(Tensor h, AttentionBatch batch, int from, int to, ILayerHook? hook = null, IList<Tensor>? taps = null)
    {
        using var scope = NewDisposeScope();
        for (int l = from; l < to; l++)
        {
            h = Blocks[l].Forward(h, batch, hook);
            taps?.Add(h.MoveToOuterDisposeScope());
        }
        return taps is null ? h.MoveToOuterDisposeScope() : h;
    }

    /// <summary>h: [..., dim], the residual stream after the last layer. Returns fp32 logits [..., vocab].</summary>
    public Tensor Logits(Tensor h)
    {
        using var scope = NewDisposeScope();
        return HeadLogits(FinalNorm.Forward(h)).MoveToOuterDisposeScope();
    }

    /// <summary>normed: [..., dim], already through the final norm (n, or n + a plugin's out). Returns fp32 logits [..., vocab].</summary>
    public Tensor HeadLogits(Tensor normed)
    {
        var logits = F.linear(normed, LmHead);
        return DType == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
    }

    /// <summary>
    /// Appends newTokens[i] to the sequence in cache slot slots[i] (decode when one token, prefill when many) and
    /// returns the fp32 logits after each sequence's last new token: [B, vocab].
    /// Without a hook this runs in inference mode, which skips libtorch's autograd bookkeeping on every call; the
    /// logits it returns are then inference tensors, which can be read but not recorded for a backward pass. A hook
    /// (a plugin inside the base) may keep tensors of its own across steps, so it gets plain no-grad.
    /// </summary>
    public Tensor Step(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens, ILayerHook? hook = null)
    {
        using var mode = hook is null ? inference_mode() : no_grad();
        int parts = hook is null ? BatchParts.For(Device, slots.Count) : 1;
        if (parts > 1) return StepInParts(cache, slots, newTokens, parts);
        using var scope = NewDisposeScope();
        return Logits(StepHidden(cache, slots, newTokens, hook, null)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// As <see cref="Step"/> without a hook, in <see cref="BatchParts"/>. Everything that could refuse the batch is
    /// checked before any part stores a key, so a refused batch leaves the cache as it was.
    /// </summary>
    private Tensor StepInParts(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens, int parts)
    {
        AttentionBatch.CheckAppend(cache, slots, newTokens.Select(t => t.Count).ToArray());
        var logits = new Tensor[parts];
        try
        {
            BatchParts.Run(slots.Count, parts, (part, from, to) =>
            {
                using var scope = NewDisposeScope(); // per thread
                var hidden = StepHidden(cache, slots.Take(from..to).ToArray(), newTokens.Take(from..to).ToArray(), null, null, oneCore: true);
                logits[part] = Logits(hidden).DetachFromDisposeScope();
            });
            return cat(logits, 0);
        }
        finally
        {
            foreach (var part in logits) part?.Dispose();
        }
    }

    /// <summary>
    /// As <see cref="Step"/>, but returns the residual stream at every layer for each sequence's last new token:
    /// [L+1, B, d] (h_0..h_L, the taps a side network reads); the logits are <c>Logits(taps[L])</c>.
    /// </summary>
    public Tensor StepTaps(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens, ILayerHook? hook = null)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var taps = new List<Tensor>();
        StepHidden(cache, slots, newTokens, hook, taps);
        return stack(taps).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// As <see cref="StepTaps"/>, but at every new position: [L+1, B, T, d], right-padded to the longest new-token list
    /// (row b's first newTokens[b].Count positions are real). A side network with attention of its own (LST) needs
    /// every position, a prompt's included.
    /// </summary>
    public Tensor StepTapsAtEveryPosition(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens, ILayerHook? hook = null)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var batch = AttentionBatch.ForCache(Config, Rope, cache, slots, newTokens.Select(t => t.Count).ToArray(), Device);
        var embedded = EmbedPadded(newTokens, batch.NewLength);
        var taps = new List<Tensor> { embedded };
        RunLayers(embedded, batch, 0, Config.Layers, hook, taps);
        batch.Commit();
        return stack(taps).MoveToOuterDisposeScope();
    }

    private Tensor StepHidden(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens, ILayerHook? hook, List<Tensor>? taps,
        bool oneCore = false)
    {
        using var batch = AttentionBatch.ForCache(Config, Rope, cache, slots, newTokens.Select(t => t.Count).ToArray(), Device, oneCore);
        // With one new token per row (decoding) every row's last token is its only one: no index to build or apply.
        var last = batch.NewLength == 1 ? null : tensor(newTokens.Select((t, b) => (long)b * batch.NewLength + t.Count - 1).ToArray(), device: Device);
        Tensor AtLast(Tensor x) => last is null ? x.view(-1, Config.Dim) : x.reshape(-1, Config.Dim).index_select(0, last); // [B, dim]

        var embedded = EmbedPadded(newTokens, batch.NewLength);
        var layerTaps = taps is null ? null : new List<Tensor>();
        var h = RunLayers(embedded, batch, 0, Config.Layers, hook, layerTaps);
        batch.Commit();
        if (taps is not null)
        {
            taps.Add(AtLast(embedded));
            taps.AddRange(layerTaps!.Select(AtLast));
        }
        return AtLast(h);
    }

    /// <summary>
    /// Whole sequences from position 0 with no cache (teacher forcing, reference checks). tokens: [B, T] int64,
    /// right-padded; lengths: real tokens per row. Returns fp32 logits [B, T, vocab].
    /// </summary>
    public Tensor Forward(Tensor tokens, IReadOnlyList<int> lengths)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return Logits(Hidden(tokens, lengths)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The residual stream after the last layer for whole sequences: [B, T, d]. Gradients flow when the caller has
    /// not disabled them, which is how plugins inside the base (LoRA, adapters) train through the frozen weights.
    /// </summary>
    public Tensor Hidden(Tensor tokens, IReadOnlyList<int> lengths, ILayerHook? hook = null)
    {
        using var scope = NewDisposeScope();
        using var batch = AttentionBatch.Causal(Config, Rope, lengths, (int)tokens.shape[1], Device);
        return RunLayers(Embed(tokens), batch, 0, Config.Layers, hook).MoveToOuterDisposeScope();
    }

    /// <summary>The residual stream at every layer for whole sequences: [L+1, B, T, d] (h_0..h_L).</summary>
    public Tensor Taps(Tensor tokens, IReadOnlyList<int> lengths, ILayerHook? hook = null)
    {
        using var scope = NewDisposeScope();
        using var batch = AttentionBatch.Causal(Config, Rope, lengths, (int)tokens.shape[1], Device);
        var embedded = Embed(tokens);
        var taps = new List<Tensor> { embedded };
        RunLayers(embedded, batch, 0, Config.Layers, hook, taps);
        return stack(taps).MoveToOuterDisposeScope();
    }

    /// <summary>As <see cref="Embed"/> for <see cref="PadTokens"/>, which already builds the tokens on the model's device.</summary>
    public Tensor EmbedPadded(IReadOnlyList<IReadOnlyList<int>> sequences, int length) => Embedding[PadTokens(sequences, length)];

    /// <summary>[B, T] int64 tokens, right-padded with 0.</summary>
    public Tensor PadTokens(IReadOnlyList<IReadOnlyList<int>> sequences, int length)
    {
        var flat = new long[sequences.Count * length];
        for (int b = 0; b < sequences.Count; b++)
        {
            for (int t = 0; t < sequences[b].Count; t++)
            {
                int id = sequences[b][t];
                if ((uint)id >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(sequences), $"token id {id} is outside the vocabulary of {Config.VocabSize}");
                flat[b * length + t] = id;
            }
        }
        return tensor(flat, [sequences.Count, length], device: Device);
    }

    private Tensor Allocate(params long[] shape)
    {
        var t = empty(shape, DType, Device);
        if (AdvisesHugePages) HugePages.Advise(t);
        _owned.Add(t.DetachFromDisposeScope());
        return t;
    }

    public void Dispose()
    {
        _stopReading.Cancel();
        foreach (var t in _owned) t.Dispose();
        Rope?.Dispose();
    }
}
