using System.Runtime.CompilerServices;
using Microsoft.Extensions.Options;
using System.Diagnostics;
using Orleans.Streams;
using Spa.Grains.Abstractions;
using Spa.Model.Plugins;
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
    [Id(21)] public string? User { get; set; }
    [Id(22)] public double? MBudget { get; set; }
    [Id(23)] public string Fallback { get; set; } = FallbackPolicies.Base;
    [Id(24)] public long EdgeTokens { get; set; }
    [Id(25)] public long Fallbacks { get; set; }
    [Id(26)] public double CloudMs { get; set; }
    [Id(27)] public double EdgeMs { get; set; }
    [Id(28)] public double NetworkMs { get; set; }
    /// <summary>The generation's token budget: how many tokens it may have generated when the current call ends.</summary>
    [Id(29)] public int MaxGenerated { get; set; }
    /// <summary>When a released session is deleted (null while it is in use).</summary>
    [Id(30)] public DateTimeOffset? ExpiresAt { get; set; }
    /// <summary>For each generated token, whether the device took part and whether it was made without the plugin
    /// (empty for sessions stored before it was kept).</summary>
    [Id(31)] public List<TokenOrigin> Origins { get; set; } = [];
    [Id(32)] public string[] Stop { get; set; } = [];
    [Id(33)] public long FailedTransmissions { get; set; }

    public int Generated => History.Count - PromptLength;
}

/// <summary>How a generated token was made, kept with it so that a resumed stream reports what the first one did.</summary>
[Flags]
public enum TokenOrigin : byte
{
    Cloud = 0,
    Edge = 1,
    Degraded = 2,
}

internal static class TokenOrigins
{
    public static TokenOrigin Of(TokenEvent token) =>
        (token.Edge ? TokenOrigin.Edge : TokenOrigin.Cloud) | (token.Degraded ? TokenOrigin.Degraded : TokenOrigin.Cloud);

    public static TokenEvent Event(int index, int token, TokenOrigin origin) =>
        new(index, token, origin.HasFlag(TokenOrigin.Edge), origin.HasFlag(TokenOrigin.Degraded));
}

/// <summary>
/// Generation: each step sends the new token(s) through shards 0..N-1 in order (activations as float arrays between
/// them) and picks the next token from the last shard's logits with one <see cref="Sampler"/> per generation (greedy,
/// or temperature/top-k/top-p from the request's seed), one draw per token, exactly as the in-process
/// <see cref="Spa.Model.Generation.Generator"/> does, so that the same settings give the same tokens. The token history
/// lives in grain storage; how far the shards have seen it (<c>_fed</c>) does not, so after a re-activation the first
/// step replays the whole history, as it does when a shard reports that it lost the session's cache.
/// <para>
/// Silo loss: the state is written every <see cref="SpaSessionOptions.PersistEveryTokens"/> tokens, each write overlapped
/// with the next token's work, so a session whose silo dies re-activates on a survivor with its tokens, and a caller
/// goes on with <see cref="ResumeStream"/>. A shard call that fails because the shard's silo died is tried again until
/// <see cref="SpaSessionOptions.Retry"/> (the shard re-activates elsewhere and asks for a replay). A released session
/// keeps its history for <see cref="SpaSessionOptions.Retention"/>; a reminder then deletes it.
/// </para>
/// <para>
/// Plugin modes run on the edge device <c>DeviceId</c>, which must belong to the session's user. Ladder modes (side,
/// parallel, switch, spa): the shards also return the taps of the last position and n, the final norm's output; the
/// gate, which the cloud holds (the device handed over its weights), decides from n whether the token goes to the device
/// (switch, spa; always in side and parallel). A token that goes costs one call to the device, which returns out; the
/// logits are W_lm out (side, switch) or W_lm (n + out) (parallel, spa). Split modes (lora, adapter): the shards call the
/// device inside every layer and report the round trips. When the device is unavailable the fallback policy decides:
/// "base" makes the token without the plugin and marks the generation degraded, "fail" ends it with
/// <see cref="EdgeUnavailableException"/>. Every token is also published on the stream <c>spa-tokens/{sessionId}</c>.
/// </para>
/// </summary>
public sealed class DecodingSessionGrain(
    [PersistentState("session", SpaGrainsHosting.SessionStorage)] IPersistentState<SessionState> state,
    IOptions<SpaModelOptions> options,
    IOptions<SpaSessionOptions> sessionOptions,
    ModelHost host,
    GrainMetrics metrics,
    TokenStreamSubscriptions subscriptions) : Grain, IDecodingSessionGrain, IRemindable
{
    private const string RetentionReminder = "retention";

    private CloudGate? _gate; // switch and spa; null after a re-activation: built again from the device's plugin
    private IGatePolicy? _policy;
    private int _fed;
    private int _replays;
    private Sampler? _sampler; // null after a re-activation: rebuilt from the stored settings and history
    private IAsyncStream<TokenEvent>? _tokens;
    private Task _published = Task.CompletedTask; // the last token's publication, overlapped with the next token's work
    private bool _active; // counted in spa_sessions_active: holds a generation until End or deactivation
    private Activity? _generation; // the trace of the generation running now: it spans the calls that pull a token stream
    private readonly SemaphoreSlim _stepping = new(1, 1); // one token, start or end at a time, whichever call it comes from
    private Task _persisted = Task.CompletedTask; // the last state write, overlapped with the next token's work
    private int _unpersisted; // tokens generated since the last write began

    private SessionState S => state.State;
    private string Id => this.GetPrimaryKeyString();

    public async ValueTask<GenerationResult> Generate(GenerationRequest request)
    {
        await Start(request);
        return await Run(request.MaxTokens);
    }

    public async ValueTask<GenerationResult> Continue(int maxTokens)
    {
        if (S.History.Count == 0) throw new InvalidOperationException("the session has no generation to continue: call Generate first");
        BeginGeneration();
        return await Run(maxTokens);
    }

    public async IAsyncEnumerable<TokenEvent> GenerateStream(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        await Start(request);
        await foreach (var token in Stream(0, cancellation)) yield return token;
    }

    public async IAsyncEnumerable<TokenEvent> ResumeStream(int fromGenerated, int maxGenerated = 0, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        if (S.History.Count == 0) throw new InvalidOperationException("the session has no generation to resume");
        S.MaxGenerated = Math.Max(S.MaxGenerated, maxGenerated);
        if (fromGenerated < 0 || fromGenerated > Math.Max(S.Generated, S.MaxGenerated))
            throw new ArgumentOutOfRangeException(nameof(fromGenerated), $"the generation has {S.Generated} tokens and a budget of {S.MaxGenerated}; {fromGenerated} cannot have been received");
        await Retain();
        BeginGeneration();
        await foreach (var token in Stream(fromGenerated, cancellation)) yield return token;
    }

    /// <summary>
    /// Yields the tokens from index <paramref name="from"/>: those in the history first, then new ones up to the budget;
    /// stores the state at the end. A stream's token calls interleave with other calls (Orleans runs them so), and a
    /// caller whose stream broke may resume while its old stream's last token is still being made: that token lands in
    /// the history and is yielded from there.
    /// </summary>
    private async IAsyncEnumerable<TokenEvent> Stream(int from, [EnumeratorCancellation] CancellationToken cancellation)
    {
        int next = from;
        try
        {
            while (true)
            {
                for (; next < S.Generated; next++)
                    yield return TokenOrigins.Event(next, S.History[S.PromptLength + next], next < S.Origins.Count ? S.Origins[next] : TokenOrigin.Cloud);
                if (S.Generated >= S.MaxGenerated || S.Finished) break;
                cancellation.ThrowIfCancellationRequested();
                var token = await NextToken();
                if (token?.Index != next) continue;
                next++;
                yield return token;
            }
        }
        finally
        {
            EndGeneration();
            await _published;
            await Persist();
        }
    }

    private void BeginGeneration()
    {
        EndGeneration();
        _generation = SpaTracing.StartGeneration(Id, S.Mode, S.Shards, S.PromptLength);
    }

    private void EndGeneration()
    {
        SpaTracing.EndGeneration(_generation, S.GeneratedTokens, S.Transmissions, S.Finished ? S.StopReason : "length");
        _generation = null;
    }

    public ValueTask<SessionSnapshot?> Describe() => ValueTask.FromResult(S.History.Count == 0 ? null
        : new SessionSnapshot(S.User, [.. S.History], S.PromptLength, S.MaxGenerated, S.Finished, Result([]), S.Stop));

    public ValueTask Release() => new(Exclusively(async () =>
    {
        if (S.History.Count == 0) return;
        await ReleaseShards();
        _fed = 0;
        await DropGate();
        Inactive();
        S.ExpiresAt = DateTimeOffset.UtcNow + sessionOptions.Value.Retention;
        await Persist(always: true);
        await this.RegisterOrUpdateReminder(RetentionReminder, sessionOptions.Value.Retention, Max(sessionOptions.Value.Retention, TimeSpan.FromMinutes(1)));
    }));

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        if (reminderName != RetentionReminder) return;
        if (S.ExpiresAt is { } expires && expires > DateTimeOffset.UtcNow) return;
        if (S.ExpiresAt is not null) await End();
        if (await this.GetReminder(RetentionReminder) is { } reminder) await this.UnregisterReminder(reminder);
    }

    /// <summary>A released session that is resumed is in use again: it no longer expires.</summary>
    private async Task Retain()
    {
        if (S.ExpiresAt is null) return;
        S.ExpiresAt = null;
        if (await this.GetReminder(RetentionReminder) is { } reminder) await this.UnregisterReminder(reminder);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>Writes the state, unless every token is in the write in flight (or <paramref name="always"/>), once that write is done.</summary>
    private async Task Persist(bool always = false)
    {
        await _persisted;
        if (_unpersisted == 0 && !always) return;
        _unpersisted = 0;
        _persisted = state.WriteStateAsync();
        await _persisted;
    }

    public ValueTask<GenerationResult> GetStatus() => ValueTask.FromResult(Result([]));

    public ValueTask<int[]> GetHistory() => ValueTask.FromResult(S.History.ToArray());

    public ValueTask End() => new(Exclusively(async () =>
    {
        await ReleaseShards();
        await _persisted;
        await state.ClearStateAsync();
        state.State = new SessionState();
        await subscriptions.ForgetAsync(Id);
        await DropGate();
        _fed = 0;
        _sampler = null;
        Inactive();
    }));

    private void Inactive()
    {
        if (_active) metrics.SessionEnded();
        _active = false;
    }

    /// <summary>Frees the session's cache slots; a shard whose silo died holds none, so a silo loss is no failure here.</summary>
    private async Task ReleaseShards()
    {
        if (S.Shards == 0) return;
        await Task.WhenAll(Enumerable.Range(0, S.Shards).Select(async k =>
        {
            try
            {
                await Shard(k).Release(Id);
            }
            catch (Exception e) when (SiloLoss.IsSiloLoss(e))
            {
            }
        }));
    }

    private Task Start(GenerationRequest request) => Exclusively(() => Begin(request));

    private async Task Begin(GenerationRequest request)
    {
        if (request.PromptTokens is not { Length: > 0 }) throw new ArgumentException("the prompt has no tokens");
        if (request.MaxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(request), "max tokens must be positive");
        int shards = request.Shards > 0 ? request.Shards : options.Value.Shards;
        var model = string.IsNullOrEmpty(request.Model) ? options.Value.EffectiveModelName : request.Model;
        var description = await SiloLoss.RetryAsync(() => Shard(model, shards - 1, shards).Describe().AsTask(), $"describing shard {shards - 1} of {model}",
            sessionOptions.Value.Retry);
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
        if (!SessionModes.All.Contains(mode)) throw new ArgumentException($"unknown mode '{mode}': use {string.Join(", ", SessionModes.All)}");
        if (request.Fallback is not (FallbackPolicies.Base or FallbackPolicies.Fail))
            throw new ArgumentException($"unknown fallback '{request.Fallback}': use base or fail");
        if (request.Tau is { } t && !(t is >= 0 and <= 1)) throw new ArgumentException($"tau must be in [0, 1], got {t}");
        if (request.MBudget is { } budget && !(budget is >= 0 and <= 1)) throw new ArgumentException($"the round-trip budget m_budget must be in [0, 1], got {budget}");
        if (request.Tau is not null && request.MBudget is not null) throw new ArgumentException("give tau or m_budget, not both");
        await DropGate();
        await Retain();
        var fallbacks = 0L;
        if (mode != SessionModes.Base)
        {
            if (string.IsNullOrEmpty(request.DeviceId)) throw new ArgumentException($"mode '{mode}' needs a device id");
            var device = GrainFactory.GetGrain<IEdgeDeviceGrain>(request.DeviceId);
            var info = await device.Describe();
            if (info.Owner != request.User) throw new DeviceAccessDeniedException($"device '{request.DeviceId}' belongs to another user");
            if (info.Model != model) throw new ArgumentException($"device '{request.DeviceId}' holds a plugin for model '{info.Model}', not '{model}'");
            try
            {
                var plugin = await device.GetPlugin();
                string needed = SessionModes.Split(mode) ? mode : "ladder";
                if (plugin.Kind != needed)
                    throw new ArgumentException($"mode '{mode}' needs a {needed} plugin, and device '{request.DeviceId}' holds a {plugin.Kind} plugin");
                if (SessionModes.Gated(mode)) _gate = await host.CreateGateAsync(model, plugin);
            }
            catch (EdgeUnavailableException) when (request.Fallback == FallbackPolicies.Base)
            {
                fallbacks = 1; // the generation starts without its plugin; later tokens try the device again
                metrics.Fallback();
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
            Tau = request.Tau ?? _gate?.Tau ?? 0,
            MBudget = request.MBudget,
            User = request.User,
            Fallback = request.Fallback,
            Fallbacks = fallbacks,
            MaxGenerated = request.MaxTokens,
            Stop = request.Stop ?? [],
        };
        _policy = null;
        _fed = 0;
        _replays = 0;
        _sampler = new Sampler(sampling);
        if (!_active) metrics.SessionStarted();
        _active = true;
        BeginGeneration();
    }

    private async Task<GenerationResult> Run(int maxTokens)
    {
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), "max tokens must be positive");
        var produced = new List<int>();
        S.MaxGenerated = S.Generated + maxTokens;
        try
        {
            while (produced.Count < maxTokens && !S.Finished)
            {
                if (await NextToken() is not { } token) break;
                produced.Add(token.Token);
            }
        }
        finally
        {
            EndGeneration();
        }
        await _published;
        await Persist();
        return Result([.. produced]);
    }

    private GenerationResult Result(int[] tokens) =>
        new(tokens, S.Finished ? S.StopReason : "length", S.History.Count, _replays, S.Mode, S.GeneratedTokens, S.Transmissions,
            S.BytesUp, S.BytesDown, S.EdgeTokens, S.Fallbacks > 0, S.Fallbacks, S.CloudMs, S.EdgeMs, S.NetworkMs, S.FailedTransmissions);

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        Inactive();
        EndGeneration();
        await Persist();
        await DropGate();
    }

    private async Task DropGate()
    {
        var gate = _gate;
        _gate = null;
        if (gate is not null) await gate.DisposeAsync();
    }

    /// <summary>The next token, or null when the generation reached its budget or its end meanwhile.</summary>
    private Task<TokenEvent?> NextToken() => Exclusively(async () => S.Generated < S.MaxGenerated && !S.Finished ? await Step() : null);

    /// <summary>Runs <paramref name="work"/> when no token, start or end of this session is running.</summary>
    private async Task<T> Exclusively<T>(Func<Task<T>> work)
    {
        await _stepping.WaitAsync();
        try
        {
            return await work();
        }
        finally
        {
            _stepping.Release();
        }
    }

    private Task Exclusively(Func<Task> work) => Exclusively(async () => { await work(); return true; });

    /// <summary>
    /// Feeds the history the shards have not seen, picks the next token, appends it and publishes it. Stops the
    /// generation at end of sequence (EOS, or BOS which llama2.c models emit between stories) or when the context is
    /// full, as the in-process <see cref="Spa.Model.Generation.Generator"/> does.
    /// </summary>
    private async Task<TokenEvent> Step()
    {
        long started = Stopwatch.GetTimestamp();
        using var trace = SpaTracing.StartToken(_generation, S.Mode, S.Shards, S.History.Count - S.PromptLength);
        var history = S.History.ToArray();
        bool ladder = S.Mode is SessionModes.Side or SessionModes.Parallel or SessionModes.Switch or SessionModes.Spa;
        var split = SessionModes.Split(S.Mode) ? new SplitEdge(S.DeviceId!, S.Mode) : null;
        bool record = SpaTracing.Records(trace);
        var step = await Pipeline(history, _fed, ladder, split, record);
        if (step.NeedsReplay)
        {
            _replays++;
            var replayed = await Pipeline(history, 0, ladder, split, record);
            if (replayed.NeedsReplay) throw new InvalidOperationException("a shard lost the session's cache again while it was being replayed");
            replayed.Edge.Add(step.Edge.ToUsage()); // the shards before the one that lost the cache called the device: those calls happened
            step = replayed;
        }
        await _persisted; // the state changes from here on
        var usage = step.Edge;
        if (usage.Degraded) await FallBack(usage.Failure);
        var (logits, asked) = ladder ? await WithSideNetwork(step, usage, trace) : (step.Logits!, split is not null && !usage.Degraded);
        int next = (_sampler ??= RestoreSampler()).Next(logits, S.History);
        S.History.Add(next);
        _fed = history.Length; // only now: a failure before leaves the shards ahead of the history, and they ask for a replay
        S.GeneratedTokens++;
        S.Transmissions += usage.Transmissions;
        S.FailedTransmissions += usage.FailedTransmissions;
        S.BytesUp += usage.BytesUp;
        S.BytesDown += usage.BytesDown;
        S.EdgeMs += usage.EdgeMs;
        S.NetworkMs += usage.NetworkMs;
        double cloudMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds - usage.EdgeMs - usage.NetworkMs;
        S.CloudMs += cloudMs;
        metrics.Token(S.Mode, usage.Transmissions, usage.FailedTransmissions, usage.BytesUp, usage.BytesDown, cloudMs, usage.EdgeMs, usage.NetworkMs);
        SpaTracing.TokenMade(trace, next, usage);
        if (asked) S.EdgeTokens++;
        if (next == S.EosId || next == S.BosId) (S.Finished, S.StopReason) = (true, "eos");
        else if (S.History.Count > S.MaxSequenceLength) (S.Finished, S.StopReason) = (true, "context");
        var token = new TokenEvent(S.Generated - 1, next, asked, usage.Degraded);
        S.Origins.Add(TokenOrigins.Of(token));
        int every = sessionOptions.Value.PersistEveryTokens;
        if (++_unpersisted >= every && every > 0)
        {
            _unpersisted = 0;
            _persisted = state.WriteStateAsync();
        }
        if (options.Value.PublishTokens)
        {
            // One publication in flight at a time keeps the stream in order; it runs while the next token is computed.
            await _published;
            var stream = _tokens ??= this.GetStreamProvider(TokenStreams.Provider).GetStream<TokenEvent>(TokenStreams.For(Id));
            _published = SiloLoss.RetryAsync(() => stream.OnNextAsync(token), $"publishing token {token.Index} of session '{Id}'", sessionOptions.Value.Retry);
        }
        return token;
    }

    /// <summary>The device was unavailable for this token: counts it, or ends the generation when the policy is "fail".</summary>
    private async Task FallBack(string? reason)
    {
        S.Fallbacks++;
        metrics.Fallback();
        if (S.Fallback == FallbackPolicies.Base) return;
        var message = $"device '{S.DeviceId}' is unavailable ({reason}) and the request's fallback is 'fail'";
        (S.Finished, S.StopReason) = (true, "device_unavailable");
        await ReleaseShards();
        throw new EdgeUnavailableException(message);
    }

    /// <summary>
    /// The logits of this token in a ladder mode: the device's answer combined with n when the token goes to the edge
    /// (always in side and parallel; when the gate says so in switch and spa), else the base's. Adds the round trip to
    /// <paramref name="usage"/>.
    /// </summary>
    private async Task<(float[] Logits, bool Asked)> WithSideNetwork(PipelineStep step, EdgeCounter usage, Activity? trace)
    {
        var normed = step.Normed ?? throw new InvalidOperationException("the last shard returned no n");
        var baseLogits = step.Logits!;
        if (SessionModes.Gated(S.Mode))
        {
            if (_gate is null && !await TryRestoreGate(usage)) return (baseLogits, false);
            _policy ??= S.MBudget is { } budget ? new BudgetPolicy(budget, _gate!.Tau) : new ThresholdPolicy(S.Tau);
            var token = step.Taps[0].Data.AsSpan(0, normed.Length).ToArray(); // h_0: the first tap row
            bool toEdge = _policy.Decide(await _gate!.ProbabilityAsync(normed, token));
            metrics.GateDecision(toEdge);
            SpaTracing.GateDecision(trace, toEdge);
            if (!toEdge) return (baseLogits, false);
        }
        int dim = normed.Length, rows = step.Taps.Sum(t => t.Shape[0]);
        var taps = new float[rows * dim];
        int at = 0;
        foreach (var t in step.Taps)
        {
            t.Data.CopyTo(taps, at);
            at += t.Data.Length;
        }
        var call = new EdgeCall(Id, EdgeCallKind.SideNetwork, 0, new Activations(taps, [rows, dim]));
        long started = Stopwatch.GetTimestamp();
        EdgeAnswer answer;
        try
        {
            answer = await Device().Ask(call);
        }
        catch (EdgeUnavailableException e)
        {
            usage.Fail(Stopwatch.GetElapsedTime(started).TotalMilliseconds, e.Message);
            await FallBack(e.Message);
            return (baseLogits, false);
        }
        usage.Add(EdgeCallKind.SideNetwork, 0, 4L * taps.Length, 4L * answer.Output.Data.Length, answer.EdgeMs, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return (await host.PluginLogitsAsync(S.Model, PluginNames.ParseMode(S.Mode), normed, answer.Output.Data), true);
    }

    /// <summary>A gated session that started without its device (or was re-activated) asks for the gate again.</summary>
    private async Task<bool> TryRestoreGate(EdgeCounter usage)
    {
        try
        {
            _gate = await host.CreateGateAsync(S.Model, await Device().GetPlugin());
            return true;
        }
        catch (EdgeUnavailableException e)
        {
            usage.Degrade(e.Message);
            await FallBack(e.Message);
            return false;
        }
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

    /// <summary>
    /// What the shards return for one step: the base's logits (null when a shard needs a replay), the taps of the last
    /// position and n when asked, and the devices' round trips, those of the shards that ran before a replay was asked
    /// for included.
    /// </summary>
    private sealed record PipelineStep(float[]? Logits, List<Activations> Taps, float[]? Normed, EdgeCounter Edge)
    {
        public bool NeedsReplay => Logits is null;
    }

    /// <summary>Positions [start, history.Length) through every shard, keeping each device round trip when <paramref name="recordRoundTrips"/>.</summary>
    private async Task<PipelineStep> Pipeline(int[] history, int start, bool wantTaps, SplitEdge? split, bool recordRoundTrips)
    {
        Activations? hidden = null;
        var taps = new List<Activations>();
        var usage = new EdgeCounter(recordRoundTrips);
        for (int k = 0; k < S.Shards; k++)
        {
            var request = new ShardStepRequest(Id, start, history.Length, k == 0 ? history[start..] : null, hidden, wantTaps, split, recordRoundTrips);
            var shard = Shard(k);
            var result = await SiloLoss.RetryAsync(() => shard.Step(request).AsTask(), $"step of session '{Id}' on shard {k}", sessionOptions.Value.Retry);
            if (result.NeedsReplay) return new PipelineStep(null, taps, null, usage);
            if (result.Edge is { } edge) usage.Add(edge);
            if (wantTaps) taps.Add(result.Taps ?? throw new InvalidOperationException($"shard {k} returned no taps"));
            if (k == S.Shards - 1)
                return new PipelineStep(result.Logits ?? throw new InvalidOperationException("the last shard returned no logits"), taps, result.Normed, usage);
            hidden = result.Hidden ?? throw new InvalidOperationException($"shard {k} returned no activations");
        }
        throw new InvalidOperationException("a session needs at least one shard");
    }

    private IBaseModelShardGrain Shard(int k) => Shard(S.Model, k, S.Shards);

    private IBaseModelShardGrain Shard(string model, int k, int shardCount) =>
        GrainFactory.GetGrain<IBaseModelShardGrain>(ShardKey.Format(model, k, shardCount));
}
