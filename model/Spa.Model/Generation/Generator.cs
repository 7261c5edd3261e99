using Spa.Model.Sampling;

namespace Spa.Model.Generation;

/// <summary>One token chosen by a decoder, with its log-probability under the model (temperature 1, no penalty).</summary>
public readonly record struct DecodedToken(int Id, float LogProbability);

/// <summary>
/// Token-level decoding with any <see cref="ITokenStepper"/> (the base, or the base with a plugin): one sequence, or many sequences stepping together in one
/// forward per step (each prefills its own prompt, then decodes). Stops at end of sequence, at the token budget or
/// when the context is full.
/// </summary>
public sealed class Generator(ITokenStepper stepper)
{
    public ITokenStepper Stepper { get; } = stepper;
    public LlamaModel Model => Stepper.Model;

    /// <summary>A token that ends a generation: EOS, and BOS, which llama2.c-trained models emit between documents.</summary>
    public bool IsEndOfSequence(int id) => id == Model.Config.EosId || id == Model.Config.BosId;

    /// <summary>Throws a clear error when the prompt cannot be decoded from.</summary>
    public void CheckPrompt(IReadOnlyList<int> prompt)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt has no tokens");
        if (prompt.Count >= Model.Config.MaxSeqLen)
            throw new ContextOverflowException($"the prompt has {prompt.Count} tokens but the model's context holds {Model.Config.MaxSeqLen}, leaving no room to generate");
    }

    /// <summary>Decodes one sequence. The caller stops early by breaking out of the enumeration or cancelling.</summary>
    public IEnumerable<DecodedToken> Decode(IReadOnlyList<int> prompt, int maxTokens, SamplingOptions sampling, CancellationToken cancellation = default)
    {
        CheckPrompt(prompt);
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), "max tokens must be positive");
        sampling.Validate();
        var sampler = new Sampler(sampling);
        var history = new List<int>(prompt);
        using var cache = Model.CreateCache(1, Math.Min(Model.Config.MaxSeqLen, prompt.Count + maxTokens));
        IReadOnlyList<int> input = prompt;
        for (int produced = 0; produced < maxTokens; produced++)
        {
            cancellation.ThrowIfCancellationRequested();
            var logits = StepOne(cache, input);
            int next = sampler.Next(logits, history, prompt.Count);
            history.Add(next);
            yield return new DecodedToken(next, Sampler.LogSoftmax(logits)[next]);
            if (IsEndOfSequence(next) || history.Count > cache.Capacity) yield break;
            input = [next];
        }
    }

    /// <summary>
    /// Greedy decoding of many sequences together: one forward per step for all unfinished sequences (the first step
    /// prefills prompts of different lengths in one padded batch). Returns each sequence's generated tokens.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<int>> DecodeBatchGreedy(IReadOnlyList<IReadOnlyList<int>> prompts, int maxTokens, CancellationToken cancellation = default) =>
        DecodeBatch(prompts, maxTokens, prompts.Select(_ => SamplingOptions.Greedy).ToArray(), cancellation);

    /// <summary>
    /// As <see cref="DecodeBatchGreedy"/>, each sequence picking its tokens with its own sampler (its own settings and
    /// seed), as <see cref="Decode"/> would pick them alone.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<int>> DecodeBatch(IReadOnlyList<IReadOnlyList<int>> prompts, int maxTokens, IReadOnlyList<SamplingOptions> sampling,
        CancellationToken cancellation = default)
    {
        foreach (var p in prompts) CheckPrompt(p);
        if (sampling.Count != prompts.Count) throw new ArgumentException($"{prompts.Count} prompts need as many sampling settings, got {sampling.Count}", nameof(sampling));
        int capacity = Math.Min(Model.Config.MaxSeqLen, prompts.Max(p => p.Count) + maxTokens);
        using var cache = Model.CreateCache(prompts.Count, capacity);
        var samplers = sampling.Select(o => new Sampler(o)).ToArray();
        var histories = prompts.Select(p => new List<int>(p)).ToArray();
        var outputs = prompts.Select(_ => new List<int>()).ToArray();
        var inputs = prompts.ToArray();
        var active = Enumerable.Range(0, prompts.Count).ToList();
        while (active.Count > 0)
        {
            cancellation.ThrowIfCancellationRequested();
            float[][] logits;
            using (var rows = Stepper.Step(cache, active, active.Select(s => inputs[s]).ToArray()))
                logits = HostCopy.Rows(rows);
            var stillActive = new List<int>();
            for (int b = 0; b < active.Count; b++)
            {
                int s = active[b];
                int next = samplers[s].Next(logits[b], histories[s], prompts[s].Count);
                histories[s].Add(next);
                outputs[s].Add(next);
                inputs[s] = [next];
                bool full = cache.Length(s) + 1 > cache.Capacity;
                if (!IsEndOfSequence(next) && outputs[s].Count < maxTokens && !full) stillActive.Add(s);
            }
            active = stillActive;
        }
        return outputs;
    }

    private float[] StepOne(KvCache cache, IReadOnlyList<int> tokens)
    {
        using var logits = Stepper.Step(cache, [0], [tokens]);
        return HostCopy.Floats(logits);
    }
}
