using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Options;
using Spa.Grains.Abstractions;
using Spa.Model.Sampling;

namespace Spa.Grains.Sessions;

/// <summary>
/// One generation, token by token, through its <see cref="TokenPipeline"/> (the shards, the user's plugin, the sampler),
/// with the tokens of the in-process engine for the same settings. When the device is unavailable the fallback policy
/// decides: <see cref="FallbackPolicy.Base"/> makes the token without the plugin and marks the generation degraded,
/// <see cref="FallbackPolicy.Fail"/> ends it with <see cref="EdgeUnavailableException"/>.
/// <para>
/// The grain keeps the <see cref="SessionState"/>, written behind the tokens (<see cref="WriteBehind"/>), so that a
/// session whose silo dies re-activates on a survivor with its tokens and a caller goes on with
/// <see cref="ResumeStream"/>; the retention reminder of a released session; and the stream every token is published on
/// (<see cref="TokenPublisher"/>).
/// </para>
/// </summary>
public sealed class DecodingSessionGrain(
    [PersistentState("session", SpaGrainsHosting.SessionStorage)] IPersistentState<SessionState> state,
    IOptions<SpaModelOptions> options,
    IOptions<SpaSessionOptions> sessionOptions,
    ModelHost host,
    GrainMetrics metrics,
    TokenStreamSubscriptions subscriptions,
    TokenPathProfile profile) : Grain, IDecodingSessionGrain, IRemindable
{
    private const string RetentionReminder = "retention";

    private TokenPipeline? _pipeline; // null after a re-activation or a release: built again from the stored request and history
    private WriteBehind? _writes;
    private TokenPublisher? _publisher;
    private bool _active; // counted in spa_sessions_active: holds a generation until End or deactivation
    private Activity? _generation; // the trace of the generation running now: it spans the calls that pull a token stream
    private readonly SemaphoreSlim _stepping = new(1, 1); // one token, start or end at a time, whichever call it comes from

    private SessionState S => state.State;
    private GenerationRequest Request => S.Request ?? throw new InvalidOperationException("the session has no generation");
    private string Id => this.GetPrimaryKeyString();
    private TokenPipeline Pipeline => _pipeline ??= new TokenPipeline(Chain(), Request.Plugin.Mode.IsLadder() ? Combiner() : null,
        Sampling.Restore(Request.Sampling, S.Generated), Split());
    private TokenPublisher Publisher => _publisher ??= new TokenPublisher(Id,
        () => this.GetStreamProvider(TokenStreams.Provider).GetStream<TokenEvent>(TokenStreams.For(Id)), sessionOptions.Value.Retry);
    private WriteBehind Writes => _writes ??= new WriteBehind(state.WriteStateAsync, sessionOptions.Value.PersistEveryTokens);

    public async ValueTask<GenerationResult> Generate(GenerationRequest request)
    {
        await Exclusively(() => Begin(request));
        return await Run(request.MaxTokens);
    }

    public async ValueTask<GenerationResult> Continue(int maxTokens)
    {
        if (!S.HasGeneration) throw new InvalidOperationException("the session has no generation to continue: call Generate first");
        BeginTrace();
        return await Run(maxTokens);
    }

    public async IAsyncEnumerable<TokenEvent> GenerateStream(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        await Exclusively(() => Begin(request));
        await foreach (var token in Stream(0, cancellation)) yield return token;
    }

    public async IAsyncEnumerable<TokenEvent> ResumeStream(int fromGenerated, int maxGenerated = 0, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        if (!S.HasGeneration) throw new InvalidOperationException("the session has no generation to resume");
        S.MaxGenerated = S.Budget(Math.Max(S.MaxGenerated, maxGenerated));
        if (fromGenerated < 0 || fromGenerated > Math.Max(S.Generated, S.MaxGenerated))
            throw new ArgumentOutOfRangeException(nameof(fromGenerated), $"the generation has {S.Generated} tokens and a budget of {S.MaxGenerated}; {fromGenerated} cannot have been received");
        await Retain();
        BeginTrace();
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
                if (!S.HasGeneration) throw new SessionEndedException($"session '{Id}' was deleted while its tokens were read");
                for (; next < S.Generated; next++)
                    yield return S.TokenAt(next);
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
            await EndCall();
        }
    }

    private async Task<GenerationResult> Run(int maxTokens)
    {
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), "max tokens must be positive");
        var produced = new List<int>();
        S.MaxGenerated = S.Budget(S.Generated + maxTokens);
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
            await EndCall();
        }
        return Result([.. produced]);
    }

    /// <summary>The end of a call that made tokens: its trace ends, and its tokens are published and stored.</summary>
    private async Task EndCall()
    {
        EndTrace();
        if (_publisher is not null) await _publisher.Published;
        if (S.HasGeneration) await Writes.FlushAsync();
    }

    private void BeginTrace()
    {
        EndTrace();
        _generation = SpaTracing.StartGeneration(Id, S.Mode, Request.Shards, S.PromptLength);
    }

    private void EndTrace()
    {
        SpaTracing.EndGeneration(_generation, S.Generated, S.Edge.Transmissions, S.Stopped ?? StopReason.Length);
        _generation = null;
    }

    public ValueTask<int> RaiseBudget(int moreTokens)
    {
        if (!S.HasGeneration) throw new InvalidOperationException("the session has no generation to resume");
        ArgumentOutOfRangeException.ThrowIfNegative(moreTokens);
        S.MaxGenerated = S.Budget(S.MaxGenerated + moreTokens);
        return ValueTask.FromResult(S.MaxGenerated);
    }

    public ValueTask<SessionSnapshot?> Describe() => ValueTask.FromResult(!S.HasGeneration ? null
        : new SessionSnapshot(Request.User, [.. S.History], S.PromptLength, S.MaxGenerated, S.Finished, Result([]), Request.Stop));

    public ValueTask<GenerationResult> GetStatus() => ValueTask.FromResult(Result([]));

    public ValueTask<int[]> GetHistory() => ValueTask.FromResult(S.History.ToArray());

    private GenerationResult Result(int[] tokens) => S.Result(tokens, _pipeline?.Replays ?? 0);

    public ValueTask Release() => new(Exclusively(async () =>
    {
        if (!S.HasGeneration) return;
        await Chain().ReleaseAsync();
        await Forget();
        var retention = sessionOptions.Value.Retention;
        S.ExpiresAt = DateTimeOffset.UtcNow + retention;
        await Writes.FlushAsync(always: true);
        await this.RegisterOrUpdateReminder(RetentionReminder, retention, retention > TimeSpan.FromMinutes(1) ? retention : TimeSpan.FromMinutes(1));
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

    public ValueTask End() => new(Exclusively(async () =>
    {
        if (S.Request is not null) await Chain().ReleaseAsync();
        await Writes.InFlight;
        await state.ClearStateAsync();
        state.State = new SessionState();
        _writes = null; // what was unwritten is gone with the state
        await subscriptions.ForgetAsync(Id);
        await Forget();
    }));

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        EndTrace();
        await Writes.FlushAsync();
        await Forget();
    }

    /// <summary>Drops what this activation holds for the generation (the pipeline and its gate); the stored state stays.</summary>
    private async Task Forget()
    {
        if (_pipeline is not null) await _pipeline.DisposeAsync();
        _pipeline = null;
        if (_active) metrics.SessionEnded();
        _active = false;
    }

    private async Task Begin(GenerationRequest request)
    {
        request.Validate();
        var sampling = request.Sampling.ToOptions();
        sampling.Validate();
        int shards = request.Shards > 0 ? request.Shards : options.Value.Shards;
        var model = string.IsNullOrEmpty(request.Model) ? options.Value.EffectiveModelName : request.Model;
        var description = await SiloLoss.RetryAsync(() => Shard(model, shards - 1, shards).Describe().AsTask(), $"describing shard {shards - 1} of {model}",
            sessionOptions.Value.Retry);
        var limits = SequenceLimits.Of(description);
        limits.CheckPrompt(request.PromptTokens);
        await Forget();
        await Retain();
        request = request with { Model = model, Shards = shards };
        var (combiner, withoutPlugin) = request.Plugin.Mode == SessionMode.Base ? (null, false)
            : await PluginCombiner.StartAsync(Id, model, request.User, request.Plugin, Device(request.Plugin), host, metrics);
        if (withoutPlugin) metrics.Fallback();
        state.State = new SessionState
        {
            Request = request,
            Limits = limits,
            History = [.. request.PromptTokens],
            PromptLength = request.PromptTokens.Length,
            Edge = new EdgeTotals { Fallbacks = withoutPlugin ? 1 : 0 },
        };
        S.MaxGenerated = S.Budget(request.MaxTokens);
        _pipeline = new TokenPipeline(Chain(), request.Plugin.Mode.IsLadder() ? combiner : null, new Sampler(sampling), Split());
        metrics.SessionStarted();
        _active = true;
        BeginTrace();
    }

    /// <summary>The next token, or null when the generation reached its budget or its end meanwhile.</summary>
    private Task<TokenEvent?> NextToken() => Exclusively(async () => S.Generated < S.MaxGenerated && !S.Finished ? await Step() : null);

    /// <summary>Makes the next token through the pipeline, appends it with what it cost, and publishes it.</summary>
    private async Task<TokenEvent> Step()
    {
        long started = Stopwatch.GetTimestamp();
        var mode = S.Mode;
        using var trace = SpaTracing.StartToken(_generation, mode, Request.Shards, S.Generated);
        var computed = await Pipeline.ComputeAsync(S.History, trace);
        long computedAt = Stopwatch.GetTimestamp();
        await Writes.InFlight; // the state changes from here on
        long written = Stopwatch.GetTimestamp();
        var usage = computed.Usage;
        if (usage.Degraded) await FallBack(usage.Failure);
        int next = Pipeline.Pick(computed, S.History, S.PromptLength);
        var edge = usage.ToUsage();
        double cloudMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds - edge.EdgeMs - edge.NetworkMs;
        var token = S.Append(next, edge, computed.Asked, cloudMs);
        if (Request.Sampling.Logprobs is { } top)
        {
            var (chosen, alternatives) = Sampler.TopLogprobs(computed.Logits, next, top);
            token = token with { Logprob = chosen, TopLogprobs = [.. alternatives.Select(a => new TokenLogprob(a.Token, a.Logprob))] };
        }
        metrics.Token(mode, edge, cloudMs);
        SpaTracing.TokenMade(trace, next, usage);
        long sampled = Stopwatch.GetTimestamp();
        Writes.TokenAdded();
        long publishing = Stopwatch.GetTimestamp();
        if (options.Value.PublishTokens) await Publisher.PublishAsync(token);
        Profile?.Token(started, computedAt, written, sampled, publishing, Stopwatch.GetTimestamp());
        return token;
    }

    /// <summary>The device was unavailable for this token: counts it, or ends the generation when the policy is to fail.</summary>
    private async Task FallBack(string? reason)
    {
        S.Edge = S.Edge with { Fallbacks = S.Edge.Fallbacks + 1 };
        metrics.Fallback();
        if (Request.Plugin.Fallback == FallbackPolicy.Base) return;
        S.Stopped = StopReason.DeviceUnavailable;
        await Chain().ReleaseAsync();
        throw new EdgeUnavailableException($"device '{Request.Plugin.DeviceId}' is unavailable ({reason}) and the request's fallback is 'fail'");
    }

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

    private ShardChain Chain() => new(Id, Request.Shards, k => Shard(Request.Model!, k, Request.Shards), sessionOptions.Value.Retry, Profile);

    private TokenPathProfile? Profile => options.Value.ProfileTokenPath ? profile : null;

    private PluginCombiner Combiner() => new(Id, Request.Model!, Request.Plugin, Device(Request.Plugin), host, metrics);

    private SplitEdge? Split() => Request.Plugin.Mode.IsSplit() ? new SplitEdge(Request.Plugin.DeviceId!, Request.Plugin.Mode) : null;

    private IEdgeDeviceGrain Device(PluginChoice plugin) => GrainFactory.GetGrain<IEdgeDeviceGrain>(plugin.DeviceId
        ?? throw new InvalidOperationException("the session's mode needs a device"));

    private IBaseModelShardGrain Shard(string model, int k, int shardCount) =>
        GrainFactory.GetGrain<IBaseModelShardGrain>(ShardKey.Format(model, k, shardCount));
}
