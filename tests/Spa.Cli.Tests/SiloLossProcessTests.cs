using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Sampling;
using Spa.Model.Tokenizers;
using Spa.Testing;
using Recovery = Spa.Grains.Abstractions.Recovery;
using Xunit.Abstractions;

namespace Spa.Cli.Tests;

/// <summary>
/// Three real <c>spa serve --redis --shards 3</c> processes; greedy generations stream over HTTP from the one holding
/// the fewest shards while another, the one holding the most of their session activations (or else shards), is
/// killed with SIGKILL. Every generation completes, its text and its stored tokens equal to the in-process engine's
/// (so no token is lost or repeated); the time from the kill to the piece that ends each stream's longest stall after
/// it is measured. Then every silo
/// is stopped and three new ones start on the same Redis: a session from before is read back and resumed to a longer
/// generation, again equal to the engine's.
/// </summary>
[Collection(RedisClusterTests.Name)]
public sealed class SiloLossProcessTests(RedisServer redis, ITestOutputHelper output) : IClassFixture<RedisServer>
{
    private const int Tokens = 200;
    private const int PiecesBeforeKill = 10;
    private static readonly string[] Prompts = ["Once upon a time", "Lily and Ben went to the park", "The little dog", "One day, a cat"];
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(30);

    /// <summary>A dead silo is declared dead after two unanswered probes of one second each.</summary>
    private static readonly Dictionary<string, string?> Membership = new()
    {
        ["Spa__Cluster__Membership__ProbeTimeout"] = "00:00:01",
        ["Spa__Cluster__Membership__NumMissedProbesLimit"] = "2",
    };

    private sealed class Stream(string prompt)
    {
        public string Prompt => prompt;
        public string? Id;
        public readonly List<(string Piece, long At)> Pieces = [];

        public int Count
        {
            get { lock (Pieces) return Pieces.Count; }
        }

        public string Text => string.Concat(Pieces.Select(p => p.Piece));
    }

    [Fact]
    public async Task AKilledSiloLosesNoTokenAndSessionsSurviveAFullRestart()
    {
        var (expected, stops) = Reference(Prompts, Tokens);
        // The session read back after the restart is one that ran out of budget, so that resuming it generates more.
        int keptIndex = Array.FindIndex(expected, e => e.Finish == FinishReason.Length);
        Assert.True(keptIndex >= 0, "every prompt's generation ends before the budget");
        var longer = Reference([Prompts[keptIndex]], Tokens + 20).Results[0];
        var streams = Prompts.Select(prompt => new Stream(prompt)).ToList();
        string kept;
        {
            var silos = await StartSilos();
            try
            {
                foreach (var survivor in await KillMidGeneration(silos, 1, streams, expected, stops))
                    Assert.Equal(0, await survivor.Process.TerminateAsync(StopTimeout));
            }
            finally
            {
                foreach (var silo in silos) await silo.DisposeAsync();
            }
            kept = streams[keptIndex].Id!;
        }

        // Every silo is gone; new ones on the same Redis serve the sessions from before.
        var restarted = await StartSilos();
        try
        {
            var silo = restarted[2];
            Assert.Equal(expected[keptIndex].Tokens, await StoredTokens(silo, kept));
            using var response = await silo.Http.PostAsJsonAsync($"/v1/sessions/{kept}/resume", new { max_tokens = 20 });
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}\n{silo.Process}");
            Assert.Equal(longer.Text, JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
            Assert.Equal(longer.Tokens, await StoredTokens(silo, kept));
        }
        finally
        {
            foreach (var s in restarted) await s.DisposeAsync();
        }
    }

    /// <summary>
    /// Silos that die together (a node with several pods, a zone): of three, two are killed half a second apart; of five,
    /// three. The generations streaming through a survivor all complete, equal to the engine's, none lost or repeated:
    /// one silo's vote declares a dead one dead (RedisCluster), so a lone survivor does not wait for votes that cannot come.
    /// Heavy (up to five processes on two cores), so it runs with the timing tests, after the others.
    /// </summary>
    [Theory]
    [Trait("Category", "Timing")]
    [InlineData(3, 2)]
    [InlineData(5, 3)]
    public async Task LosingMostSilosAtOnceLosesNoToken(int count, int killed)
    {
        var (expected, stops) = Reference(Prompts, Tokens);
        var streams = Prompts.Select(prompt => new Stream(prompt)).ToList();
        var silos = await StartSilos(count);
        try
        {
            foreach (var survivor in await KillMidGeneration(silos, killed, streams, expected, stops))
                Assert.Equal(0, await survivor.Process.TerminateAsync(StopTimeout));
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }

    /// <summary>
    /// Streams the generations through the silo holding the fewest shards, SIGKILLs <paramref name="killed"/> of the
    /// others 0.5 s apart once every generation is under way (those holding the most of the generations' sessions, then
    /// shards), and checks that every generation completes equal to the engine's, its text and its stored tokens, so that
    /// no token was lost or repeated; measures the time from the first kill to the piece that ended each stream's stall.
    /// Returns the survivors.
    /// </summary>
    private async Task<ServeProcess[]> KillMidGeneration(ServeProcess[] silos, int killed, List<Stream> streams, GenerationResult[] expected, int[] stops)
    {
        using var client = ServeProcess.Client(redis.Endpoint);
        await client.StartAsync(); // before the generations, so that finding the victims takes no time from them
        var cluster = client.Services.GetRequiredService<IClusterClient>();
        // The shards are placed as the silos start: the requests go to a silo holding the fewest, so that the others,
        // which die, hold the rest.
        var shardsAtStart = await Activations(cluster, IsShard);
        var entry = silos.OrderBy(silo => shardsAtStart.Count(s => s.SiloAddress.Endpoint.Port == silo.SiloPort)).First();
        var running = streams.Select(s => Task.Run(() => Run(entry, s))).ToList();
        await Eventually.True(async () =>
        {
            if (running.FirstOrDefault(r => r.IsFaulted) is { } failed) await failed;
            return streams.All(s => s.Count >= PiecesBeforeKill && s.Id is not null);
        }, TimeSpan.FromSeconds(60), "every generation to get going", TimeSpan.FromMilliseconds(10));
        (ServeProcess Silo, int Held)[] victims = [.. (await RankedByHeldSessions(cluster, [.. silos.Where(s => s != entry)], streams)).Take(killed)];
        Assert.True(victims.Sum(v => v.Held) > 0, "the victims hold none of the generations' activations");
        var counts = streams.Select(s => s.Count).ToArray();
        long killedAt = Stopwatch.GetTimestamp();
        for (int i = 0; i < victims.Length; i++)
        {
            if (i > 0) await Task.Delay(500);
            await victims[i].Silo.Process.KillAsync();
        }
        await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(120));

        var recoveries = new List<double>();
        foreach (var (stream, reference) in streams.Zip(expected))
        {
            Assert.Equal(reference.Text, stream.Text);
            Assert.Equal(reference.Tokens, WithoutStop(await StoredTokens(entry, stream.Id!), stops));
            if (Recovery.Milliseconds([.. stream.Pieces.Select(p => p.At)], killedAt) is { } ms) recoveries.Add(ms);
        }
        Assert.True(counts.All(c => c < Tokens / 2), $"a generation was nearly done before the kills: {string.Join(", ", counts)} pieces");
        recoveries.Sort();
        output.WriteLine($"{killed} of {silos.Length} silos killed (ports {string.Join(", ", victims.Select(v => v.Silo.SiloPort))}) after {string.Join(", ", counts)} pieces of text; " +
                         $"{streams.Count} generations of {Tokens} tokens completed identically through the silo on port {entry.SiloPort}; " +
                         $"first kill to the piece that ended each stream's stall: min {recoveries[0]:F0} ms, median {recoveries[recoveries.Count / 2]:F0} ms, max {recoveries[^1]:F0} ms");
        return [.. silos.Where(s => victims.All(v => v.Silo != s))];
    }

    /// <summary>
    /// With Orleans' own membership rules (two votes, indirect probes) a lone survivor of three cannot declare its dead
    /// peers dead, so it cannot serve what they held: a request then waits out the silo-loss retry period and is answered
    /// 503 with <c>Retry-After</c> and the reason, not 500. Heavy, so it runs with the timing tests.
    /// </summary>
    [Fact]
    [Trait("Category", "Timing")]
    public async Task WhileTheClusterCannotServeARequestIsAnswered503WithRetryAfter()
    {
        var silos = await StartSilos(3, new()
        {
            ["Spa__Cluster__Membership__NumVotesForDeathDeclaration"] = "2",
            ["Spa__Cluster__Membership__EnableIndirectProbes"] = "true",
            ["Spa__Sessions__RetrySeconds"] = "5",
        });
        try
        {
            foreach (var silo in silos[1..]) await silo.Process.KillAsync();
            // The three shards are one per silo (one per CPU advertised): every generation needs the dead silos' shards.
            using var response = await silos[0].Http.PostAsJsonAsync("/v1/completions", new { prompt = Prompts[0], max_tokens = 20 });
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{(int)response.StatusCode}: {body}");
            Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, "no Retry-After");
            var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
            Assert.Equal("cluster_unavailable", error.GetProperty("code").GetString());
            output.WriteLine($"{(int)response.StatusCode}, Retry-After {response.Headers.RetryAfter}: {error.GetProperty("message").GetString()![..120]}...");
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }

    private async Task<ServeProcess[]> StartSilos(int count = 3, Dictionary<string, string?>? settings = null)
    {
        var ports = Ports.Free(3 * count);
        var environment = new Dictionary<string, string?>(Membership);
        foreach (var (variable, value) in settings ?? []) environment[variable] = value;
        var silos = Enumerable.Range(0, count).Select(i => ServeProcess.Start(redis.Endpoint, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], environment, shards: 3)).ToArray();
        await Task.WhenAll(silos.Select(s => s.WaitUntilHealthy()));
        return silos;
    }

    /// <summary>Streams a generation from <paramref name="silo"/>, recording each piece of text as it arrives.</summary>
    private static async Task Run(ServeProcess silo, Stream stream)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { prompt = stream.Prompt, max_tokens = Tokens, stream = true }),
        };
        using var response = await silo.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string? last = null;
        await foreach (var data in ServerSentEvents.ReadAsync(await response.Content.ReadAsStreamAsync()))
        {
            last = data;
            if (data == "[DONE]") break;
            var chunk = JsonDocument.Parse(data).RootElement;
            Assert.False(chunk.TryGetProperty("error", out var error), $"the stream failed: {error}");
            stream.Id ??= chunk.GetProperty("id").GetString();
            var piece = chunk.GetProperty("choices")[0].GetProperty("text").GetString()!;
            lock (stream.Pieces) stream.Pieces.Add((piece, Stopwatch.GetTimestamp()));
        }
        Assert.Equal("[DONE]", last);
    }

    private static async Task<int[]> StoredTokens(ServeProcess silo, string id)
    {
        using var response = await silo.Http.GetAsync($"/v1/sessions/{id}");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}");
        return [.. JsonDocument.Parse(body).RootElement.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32())];
    }

    /// <summary>
    /// <paramref name="candidates"/> from the one with the most of the streams' session activations (then shards), as the
    /// cluster's management grain lists them, with how many of those each holds.
    /// </summary>
    private async Task<(ServeProcess Silo, int Held)[]> RankedByHeldSessions(IClusterClient client, ServeProcess[] candidates, List<Stream> streams)
    {
        var keys = streams.Select(s => s.Id!["cmpl-".Length..]).ToHashSet();
        var sessions = await Activations(client, s => keys.Contains(s.GrainId.Key.ToString()!));
        var shards = await Activations(client, IsShard);
        output.WriteLine(string.Join("; ", sessions.Concat(shards).GroupBy(s => s.SiloAddress.Endpoint.Port)
            .Select(g => $"port {g.Key}: {string.Join(", ", g.Select(s => s.GrainId))}")));
        int On(ServeProcess silo, List<DetailedGrainStatistic> grains) => grains.Count(s => s.SiloAddress.Endpoint.Port == silo.SiloPort);
        var ranked = candidates.OrderByDescending(silo => (On(silo, sessions), On(silo, shards))).ToArray();
        foreach (var silo in ranked)
            output.WriteLine($"port {silo.SiloPort}: {On(silo, sessions)} of the {streams.Count} sessions, {On(silo, shards)} shards");
        return [.. ranked.Select(silo => (silo, On(silo, sessions) + On(silo, shards)))];
    }

    private static bool IsShard(DetailedGrainStatistic grain) => grain.GrainId.Type.ToString()!.Contains("shard", StringComparison.Ordinal);

    /// <summary>The cluster's activations that <paramref name="match"/>, as its management grain lists them.</summary>
    private static async Task<List<DetailedGrainStatistic>> Activations(IClusterClient client, Func<DetailedGrainStatistic, bool> match) =>
        [.. (await client.GetGrain<IManagementGrain>(0).GetDetailedGrainStatistics()).Where(match)];

    /// <summary>The in-process engine's greedy generations of the prompts, and the tokens that end one (BOS, EOS).</summary>
    private static (GenerationResult[] Results, int[] Stops) Reference(string[] prompts, int tokens)
    {
        using var model = LlamaModel.Load(SharedData.Stories260K, new ModelOptions());
        var generator = new TextGenerator(model, TokenizerLoader.Load(SharedData.Tok512, model.Config.VocabSize));
        return ([.. prompts.Select(prompt => generator.Generate(prompt, tokens, SamplingOptions.Greedy))], [model.Config.BosId, model.Config.EosId]);
    }

    /// <summary>A session's tokens without the end-of-sequence token it stopped at, which the engine's result leaves out.</summary>
    private static int[] WithoutStop(int[] tokens, int[] stops) => tokens.Length > 0 && stops.Contains(tokens[^1]) ? tokens[..^1] : tokens;
}
