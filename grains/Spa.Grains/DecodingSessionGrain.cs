using System.Runtime.CompilerServices;
using Microsoft.Extensions.Options;
using Spa.Model.Sampling;

namespace Spa.Grains;

/// <summary>The persisted part of a session: what it generates from and every token so far.</summary>
[GenerateSerializer, Alias("spa.SessionState")]
public sealed class SessionState
{
    [Id(0)] public List<int> History { get; set; } = [];
    [Id(1)] public int PromptLength { get; set; }
    [Id(2)] public string Model { get; set; } = "";
    [Id(3)] public int Shards { get; set; }
    [Id(4)] public int MaxSequenceLength { get; set; }
    [Id(5)] public int BosId { get; set; }
    [Id(6)] public int EosId { get; set; }
    [Id(7)] public bool Finished { get; set; }
    [Id(8)] public string StopReason { get; set; } = "";
    [Id(9)] public double Temperature { get; set; }
    [Id(10)] public double TopP { get; set; } = 1.0;
    [Id(11)] public int TopK { get; set; }
    [Id(12)] public ulong Seed { get; set; } = SamplingOptions.Greedy.Seed;
    [Id(13)] public double RepetitionPenalty { get; set; } = 1.0;
    [Id(14)] public string Mode { get; set; } = SessionModes.Base;
    [Id(15)] public string? DeviceId { get; set; }
    [Id(16)] public double Tau { get; set; }
    [Id(17)] public long GeneratedTokens { get; set; }
    [Id(18)] public long Transmissions { get; set; }
    [Id(19)] public long BytesUp { get; set; }
    [Id(20)] public long BytesDown { get; set; }
}

/// <summary>The combination modes a session runs: the base alone, or a ladder plugin on an edge device.</summary>
public static class SessionModes
{
    public const string Base = "base";
    public const string Parallel = "parallel";
    public const string Spa = "spa";
}

/// <summary>
/// Generation: each step sends the new token(s) through shards 0..N-1 in order (activations as float
/// arrays between them) and picks the next token from the last shard's logits with one <see cref="Sampler"/> per
/// generation (greedy, or temperature/top-k/top-p from the request's seed), one draw per token, exactly as the
/// in-process <see cref="Spa.Model.Generation.Generator"/> does, so that the same settings give the same tokens. The token history lives in grain
/// storage; how far the shards have seen it (<c>_fed</c>) does not, so after a re-activation the first step replays the
/// whole history, as it does when a shard reports that it lost the session's cache.
/// <para>
/// Modes parallel and spa (a ladder plugin on the edge device <c>DeviceId</c>): the shards also return the taps of the
/// last position (the residual stream after each layer, and h_0) and the last shard n, the final norm's output. In spa
/// the plugin's gate, which the cloud holds, decides from n whether the token goes to the device (p > tau); in parallel
/// every token goes. A token that goes costs one call to the device grain, which returns out, and its logits are
/// W_lm (n + out); the others keep the base's logits. The session counts those calls and their bytes.
/// </para>
/// </summary>
public sealed class DecodingSessionGrain(
    [PersistentState("session", SpaGrainsHosting.SessionStorage)] IPersistentState<SessionState> state,
    IOptions<SpaModelOptions> options,
    ModelHost host) : Grain, IDecodingSessionGrain
{
    private CloudGate? _gate; // spa only; null after a re-activation: loaded again from the device's plugin
    private int _fed;
    private int _replays;
    private Sampler? _sampler; // null after a re-activation: rebuilt from the stored settings and history


    private SessionState S => state.State;

    public async ValueTask<GenerationResult> Generate(GenerationRequest request)
    {
        await Start(request);
        return await Run(request.MaxTokens);
    }

    public async ValueTask<GenerationResult> Continue(int maxTokens)
    {
        if (S.History.Count == 0) throw new InvalidOperationException("the session has no generation to continue: call Generate first");
        return await Run(maxTokens);
    }

    public async IAsyncEnumerable<int> GenerateStream(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        await Start(request);
        try
        {
            for (int produced = 0; produced < request.MaxTokens && !S.Finished; produced++)
            {
                cancellation.ThrowIfCancellationRequested();
                yield return await NextToken();
            }
        }
        finally
        {
            await state.WriteStateAsync();
        }
    }

    public ValueTask<int[]> GetHistory() => ValueTask.FromResult(S.History.ToArray());

    public async ValueTask End()
    {
        if (S.Shards > 0)
        {
            var id = this.GetPrimaryKeyString();
            await Task.WhenAll(Enumerable.Range(0, S.Shards).Select(k => Shard(k).Release(id).AsTask()));
        }
        await state.ClearStateAsync();
        state.State = new SessionState();
        await DropGate();
        _fed = 0;
        _sampler = null;
    }

    private async Task Start(GenerationRequest request)
    {
        if (request.PromptTokens is not { Length: > 0 }) throw new ArgumentException("the prompt has no tokens");
        if (request.MaxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(request), "max tokens must be positive");
        int shards = request.Shards > 0 ? request.Shards : options.Value.Shards;
        var model = string.IsNullOrEmpty(request.Model) ? options.Value.EffectiveModelName : request.Model;
        var description = await Shard(model, shards - 1, shards).Describe();
        if (request.PromptTokens.Length >= description.MaxSequenceLength)
            throw new ArgumentException($"the prompt has {request.PromptTokens.Length} tokens but the model's context holds {description.MaxSequenceLength}, leaving no room to generate");
        if (request.PromptTokens.Any(t => (uint)t >= (uint)description.VocabSize))
            throw new ArgumentException($"a prompt token is outside the vocabulary of {description.VocabSize}");
        var sampling = new SamplingOptions
        {
            Temperature = request.Temperature,
            TopP = request.TopP,
            TopK = request.TopK,
            Seed = request.Seed is { } seed ? unchecked((ulong)seed) : SamplingOptions.Greedy.Seed,
            RepetitionPenalty = request.RepetitionPenalty,
        };
        sampling.Validate();
        var mode = string.IsNullOrEmpty(request.Mode) ? SessionModes.Base : request.Mode;
        if (mode is not (SessionModes.Base or SessionModes.Parallel or SessionModes.Spa))
            throw new ArgumentException($"unknown mode '{mode}': use base, parallel or spa");
        if (request.Tau is { } t && !(t is >= 0 and <= 1)) throw new ArgumentException($"tau must be in [0, 1], got {t}");
        await DropGate();
        double tau = 0;
        if (mode != SessionModes.Base)
        {
            if (string.IsNullOrEmpty(request.DeviceId)) throw new ArgumentException($"mode '{mode}' needs a device id");
            var device = await GrainFactory.GetGrain<IEdgeDeviceGrain>(request.DeviceId).Describe();
            if (device.Model != model)
                throw new ArgumentException($"device '{request.DeviceId}' holds a plugin for model '{device.Model}', not '{model}'");
            if (mode == SessionModes.Spa)
            {
                _gate = await host.LoadGateAsync(model, device.PluginDirectory);
                tau = request.Tau ?? _gate.Tau;
            }
        }
        state.State = new SessionState
        {
            Model = model,
            Shards = shards,
            MaxSequenceLength = description.MaxSequenceLength,
            BosId = description.BosId,
            EosId = description.EosId,
            History = [.. request.PromptTokens],
            PromptLength = request.PromptTokens.Length,
            Temperature = sampling.Temperature,
            TopP = sampling.TopP,
            TopK = sampling.TopK,
            Seed = sampling.Seed,
            RepetitionPenalty = sampling.RepetitionPenalty,
            Mode = mode,
            DeviceId = mode == SessionModes.Base ? null : request.DeviceId,
            Tau = tau,
        };
        _fed = 0;
        _replays = 0;
        _sampler = new Sampler(sampling);
    }

    private async Task<GenerationResult> Run(int maxTokens)
    {
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), "max tokens must be positive");
        var produced = new List<int>();
        while (produced.Count < maxTokens && !S.Finished)
            produced.Add(await NextToken());
        await state.WriteStateAsync();
        return new GenerationResult([.. produced], S.Finished ? S.StopReason : "length", S.History.Count, _replays,
            S.Mode, S.GeneratedTokens, S.Transmissions, S.BytesUp, S.BytesDown);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken) => await DropGate();

    private async Task DropGate()
    {
        var gate = _gate;
        _gate = null;
        if (gate is not null) await gate.DisposeAsync();
    }

    /// <summary>
    /// Feeds the history the shards have not seen, picks the next token and appends it. Stops the generation at end of
    /// sequence (EOS, or BOS which llama2.c models emit between stories) or when the context is full, as the
    /// in-process <see cref="Spa.Model.Generation.Generator"/> does.
    /// </summary>
    private async Task<int> NextToken()
    {
        var history = S.History.ToArray();
        bool plugin = S.Mode != SessionModes.Base;
        var step = await Pipeline(history, _fed, plugin);
        if (step is null)
        {
            _replays++;
            step = await Pipeline(history, 0, plugin)
                ?? throw new InvalidOperationException("a shard lost the session's cache again while it was being replayed");
        }
        _fed = history.Length;
        var logits = plugin ? await WithPlugin(step) : step.Logits;
        int next = (_sampler ??= RestoreSampler()).Next(logits, S.History);
        S.History.Add(next);
        S.GeneratedTokens++;
        if (next == S.EosId || next == S.BosId) (S.Finished, S.StopReason) = (true, "eos");
        else if (S.History.Count > S.MaxSequenceLength) (S.Finished, S.StopReason) = (true, "context");
        return next;
    }

    /// <summary>
    /// The logits of this token in mode parallel or spa: the device's answer combined with n when the token goes to the
    /// edge (always in parallel; when the gate's p > tau in spa), else the base's.
    /// </summary>
    private async Task<float[]> WithPlugin(PipelineStep step)
    {
        var normed = step.Normed ?? throw new InvalidOperationException("the last shard returned no n");
        if (S.Mode == SessionModes.Spa)
        {
            _gate ??= await host.LoadGateAsync(S.Model, (await Device().Describe()).PluginDirectory);
            if (!(await _gate.ProbabilityAsync(normed) > S.Tau)) return step.Logits;
        }
        int dim = normed.Length, rows = step.Taps.Sum(t => t.Shape[0]);
        var taps = new float[rows * dim];
        int at = 0;
        foreach (var t in step.Taps)
        {
            t.Data.CopyTo(taps, at);
            at += t.Data.Length;
        }
        var answer = await Device().SideStep(new EdgeSideStepRequest(this.GetPrimaryKeyString(), new Activations(taps, [rows, dim])));
        S.Transmissions++;
        S.BytesUp += 4L * taps.Length;
        S.BytesDown += 4L * answer.Out.Length;
        return await host.PluginLogitsAsync(S.Model, normed, answer.Out);
    }

    private IEdgeDeviceGrain Device() => GrainFactory.GetGrain<IEdgeDeviceGrain>(S.DeviceId
        ?? throw new InvalidOperationException("the session's mode needs a device"));

    /// <summary>
    /// The sampler of the stored generation after a re-activation, at the point of its random sequence where it was: a
    /// stochastic <see cref="Sampler.Next"/> draws exactly one number per token, so the draws of the tokens generated
    /// so far are replayed on a one-token row (which draws and changes nothing else).
    /// </summary>
    private Sampler RestoreSampler()
    {
        var sampler = new Sampler(new SamplingOptions
        {
            Temperature = S.Temperature,
            TopP = S.TopP,
            TopK = S.TopK,
            Seed = S.Seed,
            RepetitionPenalty = S.RepetitionPenalty,
        });
        if (S.Temperature > 0)
        {
            ReadOnlySpan<float> one = [0f];
            for (int i = S.PromptLength; i < S.History.Count; i++) sampler.Next(one, []);
        }
        return sampler;
    }

    /// <summary>What the shards return for one step: the base's logits and, when asked, the taps of the last position and n.</summary>
    private sealed record PipelineStep(float[] Logits, List<Activations> Taps, float[]? Normed);

    /// <summary>Positions [start, history.Length) through every shard; null when a shard needs a replay.</summary>
    private async Task<PipelineStep?> Pipeline(int[] history, int start, bool wantTaps)
    {
        var id = this.GetPrimaryKeyString();
        Activations? hidden = null;
        var taps = new List<Activations>();
        for (int k = 0; k < S.Shards; k++)
        {
            var request = new ShardStepRequest(id, start, history.Length, k == 0 ? history[start..] : null, hidden, wantTaps);
            var result = await Shard(k).Step(request);
            if (result.NeedsReplay) return null;
            if (wantTaps) taps.Add(result.Taps ?? throw new InvalidOperationException($"shard {k} returned no taps"));
            if (k == S.Shards - 1)
                return new PipelineStep(result.Logits ?? throw new InvalidOperationException("the last shard returned no logits"), taps, result.Normed);
            hidden = result.Hidden ?? throw new InvalidOperationException($"shard {k} returned no activations");
        }
        throw new InvalidOperationException("a session needs at least one shard");
    }

    private IBaseModelShardGrain Shard(int k) => Shard(S.Model, k, S.Shards);

    private IBaseModelShardGrain Shard(string model, int k, int shardCount) =>
        GrainFactory.GetGrain<IBaseModelShardGrain>(ShardKey.Format(model, k, shardCount));
}
