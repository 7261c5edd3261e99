using System.Diagnostics;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Sessions;

/// <summary>
/// Where the tokens' time went on their way through the cluster, summed over the tokens of this process's sessions
/// while <see cref="SpaModelOptions.ProfileTokenPath"/> is on: from <see cref="Stopwatch"/> timestamps the session takes
/// around each part of its step and the shards return with each step (<see cref="ShardTimings"/>). A few timestamps and
/// additions a token; off by default all the same, since only a benchmark reads it.
/// </summary>
public sealed class TokenPathProfile
{
    private readonly long[] _ticks = new long[Enum.GetValues<TokenPathPart>().Length];
    private long _tokens, _shardCalls;

    /// <summary>One shard call of a step: sent by the session at <paramref name="sent"/>, resumed there at <paramref name="resumed"/>.</summary>
    public void ShardCall(long sent, ShardTimings shard, long resumed)
    {
        Interlocked.Increment(ref _shardCalls);
        Add(TokenPathPart.ShardCalls, resumed - sent);
        Add(TokenPathPart.RequestHop, shard.Received - sent);
        Add(TokenPathPart.ShardTurn, shard.Batched - shard.Received + (shard.Returned - shard.WorkerReturned));
        Add(TokenPathPart.BatchWindow, shard.HandedToWorker - shard.Batched);
        Add(TokenPathPart.WorkerHandOff, shard.ForwardStarted - shard.HandedToWorker);
        Add(TokenPathPart.Forward, shard.ForwardEnded - shard.ForwardStarted);
        Add(TokenPathPart.WorkerReturn, shard.WorkerReturned - shard.ForwardEnded);
        Add(TokenPathPart.ResponseHop, resumed - shard.Returned);
    }

    /// <summary>
    /// One token's step in its session, in the order of its parts: it began at <paramref name="started"/>, had its
    /// logits at <paramref name="computed"/>, found the previous state write done at <paramref name="written"/>, had
    /// drawn and appended the token at <paramref name="sampled"/>, had started the state's write (its synchronous part)
    /// when it began to publish the token at <paramref name="publishing"/>, and ended at <paramref name="ended"/>.
    /// </summary>
    public void Token(long started, long computed, long written, long sampled, long publishing, long ended)
    {
        Interlocked.Increment(ref _tokens);
        Add(TokenPathPart.Step, ended - started);
        Add(TokenPathPart.Compute, computed - started);
        Add(TokenPathPart.WriteWait, written - computed);
        Add(TokenPathPart.Sampling, sampled - written);
        Add(TokenPathPart.WriteStart, publishing - sampled);
        Add(TokenPathPart.Publish, ended - publishing);
    }

    /// <summary>The sums so far; the difference of two readings is what happened between them.</summary>
    public TokenPathReading Read() => new(Interlocked.Read(ref _tokens), Interlocked.Read(ref _shardCalls),
        [.. _ticks.Select((_, i) => Interlocked.Read(ref _ticks[i]))]);

    private void Add(TokenPathPart part, long ticks) => Interlocked.Add(ref _ticks[(int)part], ticks);
}

/// <summary>The parts of a token's time that <see cref="TokenPathProfile"/> sums; the shard parts over every shard call of the token.</summary>
public enum TokenPathPart
{
    /// <summary>The session's whole step: <see cref="Compute"/> to the end of the publication.</summary>
    Step,

    /// <summary>The logits: every shard call, and a ladder plugin's part.</summary>
    Compute,

    /// <summary>Every shard call, from the session's sending it to its resuming with the answer.</summary>
    ShardCalls,

    /// <summary>From the session's call to the shard grain's running it: the request's copy and the grain call's scheduling.</summary>
    RequestHop,

    /// <summary>The shard grain's own turns: checks and slot before the batch, and returning the result after it.</summary>
    ShardTurn,

    /// <summary>In the batch, waiting for other sessions' steps or for the torch worker to be free.</summary>
    BatchWindow,

    /// <summary>From the hand-off to the torch worker to its starting the forward.</summary>
    WorkerHandOff,

    /// <summary>The batch's forward on the torch worker: the layers, and the activations in and out of tensors.</summary>
    Forward,

    /// <summary>From the forward's end to the shard grain's resuming with it.</summary>
    WorkerReturn,

    /// <summary>From the shard grain's returning to the session's resuming: the result's copy and the response's scheduling.</summary>
    ResponseHop,

    /// <summary>Waiting for the write of the previous token's state to end before this token changes the state.</summary>
    WriteWait,

    /// <summary>Drawing the token and appending it to the state, with its metrics and trace.</summary>
    Sampling,

    /// <summary>Starting the write of the state behind the token, up to its first wait: the state's serialization.</summary>
    WriteStart,

    /// <summary>Publishing the token on its stream, as far as the step waits for it.</summary>
    Publish,
}

/// <summary>A reading of <see cref="TokenPathProfile"/>: tokens, shard calls and the ticks of each <see cref="TokenPathPart"/>.</summary>
public sealed record TokenPathReading(long Tokens, long ShardCalls, long[] Ticks)
{
    /// <summary>What happened since <paramref name="before"/>.</summary>
    public TokenPathReading Since(TokenPathReading before) =>
        new(Tokens - before.Tokens, ShardCalls - before.ShardCalls, [.. Ticks.Select((t, i) => t - before.Ticks[i])]);

    /// <summary>The part's milliseconds per token (0 without tokens).</summary>
    public double MsPerToken(TokenPathPart part) => Tokens == 0 ? 0 : 1000.0 * Ticks[(int)part] / Stopwatch.Frequency / Tokens;
}
