using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Spa.CommandLine;
using Spa.Grains;
using Spa.Grains.Abstractions;
using Spa.Model;
using StackExchange.Redis;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa bench persistence</c>: what writing a session to grain storage after every token costs, against writing it
/// once at the end of the call. For each storage (memory, and Redis when given), two one-process silos run side by side,
/// one per setting of <see cref="SpaSessionOptions.PersistEveryTokens"/> (1 and 0), and one greedy session at a time
/// generates on each in turn, so that both see the same machine; the median per-token latency of each and their ratio
/// are printed. Every run checks that both settings give the same tokens.
/// </summary>
public static class BenchPersistenceCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var redis = new Option<string?>("--redis") { Description = "Also measure Redis grain storage on this server (HOST:PORT)." };
        var tokens = new Option<int>("--tokens") { Description = "Tokens per measured generation.", DefaultValueFactory = _ => 128 };
        var repeats = new Option<int>("--repeats") { Description = "Measured generations per setting; the median is reported.", DefaultValueFactory = _ => 7 };
        var shards = new Option<int>("--shards") { Description = "Shards per session.", DefaultValueFactory = _ => 1 };
        var command = new Command("persistence", "The per-token latency of writing the session after every token, against writing it at the end of the call.");
        model.AddTo(command);
        foreach (var option in new Option[] { redis, tokens, repeats, shards }) command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            int count = result.GetValue(tokens), runs = result.GetValue(repeats), shardCount = result.GetValue(shards);
            foreach (var (option, value) in new[] { (tokens, count), (repeats, runs), (shards, shardCount) })
                if (value <= 0) throw new UsageException($"{option.Name} must be positive, got {value}");
            var redisServer = result.GetValue(redis);
            ConfigurationOptions? redisConfiguration = null;
            if (redisServer is not null)
            {
                try
                {
                    redisConfiguration = ConfigurationOptions.Parse(redisServer);
                }
                catch (ArgumentException)
                {
                    throw new UsageException($"--redis must be HOST:PORT, got '{redisServer}'");
                }
            }
            var modelPath = model.ResolvePath(result);
            var modelOptions = model.Options(result);
            var storages = redisConfiguration is null ? new[] { "memory" } : ["memory", "redis"];
            var table = new StringBuilder();
            table.AppendLine(CultureInfo.InvariantCulture, $"{"storage",-8} {"written",-14} {"ms/token",9} {"ratio",6}   (median of {runs} generations of {count} tokens, {shardCount} shard(s))");
            using var progress = new ProgressLine();
            foreach (var storage in storages)
            {
                progress.Update($"{storage}: starting two silos", force: true);
                using var atEnd = BuildSilo(modelPath, modelOptions, storage == "redis" ? redisConfiguration : null, persistEveryTokens: 0);
                using var everyToken = BuildSilo(modelPath, modelOptions, storage == "redis" ? redisConfiguration : null, persistEveryTokens: 1);
                await atEnd.StartAsync(cancellation);
                await everyToken.StartAsync(cancellation);
                try
                {
                    var hosts = new[] { atEnd, everyToken };
                    var prompt = new[] { 1 };
                    foreach (var host in hosts) await Generate(host, prompt, 16, shardCount); // warm-up: JIT, activations, caches
                    var perToken = new List<double>[] { [], [] };
                    for (int run = 0; run < runs; run++)
                    {
                        progress.Update($"{storage}: generation {run + 1}/{runs}", force: true);
                        var tokensOf = new int[2][];
                        // Alternating which goes first, so that neither always follows the other.
                        foreach (int i in run % 2 == 0 ? new[] { 0, 1 } : [1, 0])
                        {
                            var clock = Stopwatch.StartNew();
                            tokensOf[i] = await Generate(hosts[i], prompt, count, shardCount);
                            perToken[i].Add(clock.Elapsed.TotalMilliseconds / tokensOf[i].Length);
                        }
                        if (!tokensOf[0].SequenceEqual(tokensOf[1])) throw new InvalidOperationException("the two settings generated different tokens");
                    }
                    double end = BenchCommand.Median(perToken[0]), every = BenchCommand.Median(perToken[1]);
                    table.AppendLine(CultureInfo.InvariantCulture, $"{storage,-8} {"end of call",-14} {end,9:F3} {1.0,6:F2}");
                    table.AppendLine(CultureInfo.InvariantCulture, $"{storage,-8} {"every token",-14} {every,9:F3} {every / end,6:F2}");
                }
                finally
                {
                    await everyToken.StopAsync(CancellationToken.None);
                    await atEnd.StopAsync(CancellationToken.None);
                }
            }
            progress.Dispose();
            Console.Out.Write(table);
            return 0;
        });
        return command;
    }

    private static async Task<int[]> Generate(IHost host, int[] prompt, int tokens, int shards)
    {
        var session = host.Services.GetRequiredService<IGrainFactory>().GetGrain<IDecodingSessionGrain>("bench-" + Guid.NewGuid().ToString("N"));
        var result = await session.Generate(new GenerationRequest(prompt, tokens) { Shards = shards });
        await session.End();
        return result.Tokens;
    }

    /// <summary>A one-process silo whose sessions are kept in memory, or in Redis, and written every <paramref name="persistEveryTokens"/> tokens.</summary>
    private static IHost BuildSilo(string modelPath, ModelOptions options, ConfigurationOptions? redis, int persistEveryTokens) =>
        BenchClusterCommand.BuildSilo(modelPath, options, _ => { }, silo =>
        {
            if (redis is null) silo.AddSpaMemoryStorage();
            else
            {
                silo.AddSpaRedisStorage(SpaGrainsHosting.SessionStorage, redis);
                silo.AddSpaMemoryStorage(SpaGrainsHosting.PubSubStorage);
            }
            silo.Services.Configure<SpaSessionOptions>(o => o.PersistEveryTokens = persistEveryTokens);
        });
}
