using System.Text.Json;
using Spa.Model;
using Spa.Model.Checkpoints;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// <c>spa bench decode</c>, <c>load</c> and <c>cluster</c> write their figures as JSON. One class, so that the benchmarks do
/// not run beside each other.
/// </summary>
public sealed class BenchTests
{
    [Fact]
    public async Task DecodeBenchmarkWritesJson()
    {
        using var temp = new TempDir();
        var file = temp["bench.json"];

        var run = await Spa.RunAsync("bench", "decode", "--model", SharedData.Stories260K,
            "--tokens", "16", "--batches", "2", "--repeats", "1", "--warm-up-rounds", "1", "--json", file);

        Expect.Success(run);
        Assert.Equal("", run.Stdout);
        Expect.NoStackTrace(run);
        Assert.True(File.Exists(file), "no JSON written\n" + run);
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var root = json.RootElement;
        Assert.True(root.GetProperty("single_stream_tokens_per_s").GetDouble() > 0, "single stream rate\n" + root);
        var batched = root.GetProperty("batched").EnumerateArray().ToList();
        var only = Assert.Single(batched);
        Assert.Equal(2, only.GetProperty("batch").GetInt32());
        Assert.True(only.GetProperty("tokens_per_s").GetDouble() > 0, "batched rate\n" + root);
        Assert.Equal(16, root.GetProperty("tokens_per_sequence").GetInt32());
        foreach (var tensors in new[] { root.GetProperty("single_stream_tensors"), only.GetProperty("tensors") })
        {
            Assert.True(tensors.GetProperty("created_per_step").GetDouble() > 0, "tensors per step\n" + root);
            Assert.Equal(0, tensors.GetProperty("left_alive").GetInt64());
        }
        // As in the cluster benchmark: one round cannot leave a new process warm, and the report says so.
        var warmUp = Assert.Single(root.GetProperty("warm_up").EnumerateArray());
        Assert.True(warmUp.GetProperty("jit_ms").GetDouble() > 0, "warm-up\n" + warmUp);
        Assert.False(warmUp.GetProperty("warm").GetBoolean(), "warm-up\n" + warmUp);
        Assert.Contains("NOT WARM", run.Stderr);
    }

    [Fact]
    public async Task ClusterBenchmarkChecksItsTokensAndWritesEveryFigure()
    {
        using var temp = new TempDir();
        var file = temp["cluster.json"];

        var run = await Spa.RunAsync("bench", "cluster", "--model", SharedData.Stories260K,
            "--shards", "1", "2", "--sessions", "4", "--tokens", "8", "--repeats", "1", "--warm-up-rounds", "1", "--tracing", "--json", file);

        Expect.Success(run);
        Expect.NoStackTrace(run);
        Assert.Contains("latency ratio", run.Stdout);
        Assert.Contains("tracing recorded", run.Stdout);
        Assert.True(File.Exists(file), "no JSON written\n" + run);
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var root = json.RootElement;
        Assert.Equal("stories260K", root.GetProperty("model").GetString());
        Assert.Equal(4, root.GetProperty("sessions").GetInt32());
        Assert.Equal(8, root.GetProperty("tokens_per_session").GetInt32());
        var check = root.GetProperty("self_check");
        Assert.True(check.GetProperty("passed").GetBoolean(), "self-check\n" + root);
        // Per shard count, one run: the engine alone and 1 session, the engine's batch and 4 sessions, each cluster run again traced.
        Assert.Equal(2 * 2 * (1 + 4), check.GetProperty("sequences").GetInt32());
        Assert.True(check.GetProperty("tokens").GetInt64() > 0, "tokens checked\n" + root);

        // A new process compiles the whole serving path in its first round, so one round cannot leave it warm, and the
        // report says so rather than passing start-up off as the steady state.
        var warmUp = Assert.Single(root.GetProperty("warm_up").EnumerateArray());
        Assert.True(warmUp.GetProperty("jit_ms").GetDouble() > 0, "warm-up\n" + warmUp);
        Assert.Equal(warmUp.GetProperty("jit_ms").GetDouble() / (1000 * warmUp.GetProperty("seconds").GetDouble()), warmUp.GetProperty("jit_share").GetDouble(), 6);
        Assert.False(warmUp.GetProperty("warm").GetBoolean(), "warm-up\n" + warmUp);
        Assert.Contains("NOT WARM", run.Stdout);

        var shards = root.GetProperty("shards").EnumerateArray().ToList();
        Assert.Equal([1, 2], shards.Select(s => s.GetProperty("shards").GetInt32()));
        foreach (var figure in shards)
        {
            foreach (var name in new[] { "engine_ms_per_token", "cluster_ms_per_token", "latency_ratio", "cluster_one_tokens_per_s",
                         "cluster_many_tokens_per_s", "throughput_ratio", "engine_one_tokens_per_s", "engine_batch_tokens_per_s",
                         "cluster_many_vs_engine_batch", "mean_batch", "tracing_latency_ratio", "tracing_throughput_ratio" })
                Assert.True(figure.GetProperty(name).GetDouble() is > 0 and < 1e6, $"{name}\n{figure}");
            int shardCount = figure.GetProperty("shards").GetInt32();
            var targets = figure.GetProperty("targets");
            Assert.Equal(shardCount == 1 ? 1.15 : 1.3, targets.GetProperty("latency_ratio_at_most").GetDouble());
            Assert.Equal(10, targets.GetProperty("throughput_ratio_at_least").GetDouble());
            Assert.Equal(figure.GetProperty("latency_ratio").GetDouble() <= (shardCount == 1 ? 1.15 : 1.3), figure.GetProperty("latency_target_met").GetBoolean());
            Assert.Equal(figure.GetProperty("throughput_ratio").GetDouble() >= 10, figure.GetProperty("throughput_target_met").GetBoolean());
            // The token path's parts follow one another, so they add up to a session's time per token; each shard call
            // is counted once (no replays here), and its forward took time.
            foreach (var kind in new[] { "one_session", "many_sessions" })
            {
                var breakdown = figure.GetProperty(kind);
                Assert.Equal(shardCount, breakdown.GetProperty("shard_calls_per_token").GetDouble());
                var parts = breakdown.GetProperty("ms_per_token").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
                Assert.True(parts["forward"] > 0, $"{kind}\n{breakdown}");
                Assert.All(parts.Where(p => p.Key != "outside_step"), p => Assert.True(p.Value >= 0, $"{kind} {p.Key}\n{breakdown}"));
                Assert.InRange(parts.Where(p => p.Key != "total").Sum(p => p.Value), parts["total"] - 0.002, parts["total"] + 0.002);
            }
            Assert.InRange(figure.GetProperty("largest_batch").GetInt32(), 1, 4);
            var only = Assert.Single(figure.GetProperty("runs").EnumerateArray());
            Assert.Equal(0, only.GetProperty("evictions").GetInt64());
            Assert.Equal(0, only.GetProperty("replays").GetInt64());
            Assert.True(only.GetProperty("jit_ms").GetDouble() >= 0, "run\n" + only);
            // Every token of the traced runs made at least its token step's activity.
            Assert.True(only.GetProperty("traced").GetProperty("activities").GetInt64() >= 8 * (1 + 4), "traced\n" + only);
        }
        var machine = root.GetProperty("machine");
        Assert.True(machine.GetProperty("cores").GetInt32() > 0, "cores\n" + machine);
        Assert.False(string.IsNullOrWhiteSpace(machine.GetProperty("os").GetString()), "os\n" + machine);
        Assert.Contains(".NET", machine.GetProperty("runtime").GetString());
    }

    [Fact]
    public async Task PersistenceBenchmarkComparesBothSettingsOnTheSameTokens()
    {
        var run = await Spa.RunAsync("bench", "persistence", "--model", SharedData.Stories260K, "--tokens", "8", "--repeats", "1", "--shards", "2");

        Expect.Success(run);
        Expect.NoStackTrace(run);
        var rows = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        Assert.Equal(2, rows.Count);
        Assert.All(rows, row => Assert.Equal("memory", row[0]));
        Assert.Equal(1.0, double.Parse(rows[0][^1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.All(rows, row => Assert.True(double.Parse(row[^2], System.Globalization.CultureInfo.InvariantCulture) > 0, string.Join(' ', row)));
        Assert.Contains("--tokens must be positive", (await Spa.RunAsync("bench", "persistence", "--tokens", "0")).Stderr);
    }

    [Fact]
    public async Task LoadBenchmarkMeasuresEveryDtypeInItsOwnProcessAgainstReadingTheFile()
    {
        using var temp = new TempDir();
        var file = temp["load.json"];

        var run = await Spa.RunAsync("bench", "load", "--model", SharedData.Stories260KBin, "--dtypes", "float32", "bfloat16", "--repeats", "1",
            "--map-weights", "true", "--json", file);

        Expect.Success(run);
        Expect.NoStackTrace(run);
        Assert.Equal("", run.Stdout);
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var root = json.RootElement;
        long fileBytes = new FileInfo(SharedData.Stories260KBin).Length;
        Assert.Equal(fileBytes, root.GetProperty("file_bytes").GetInt64());
        var summary = root.GetProperty("summary").EnumerateArray().ToList();
        Assert.Equal(["float32", "bfloat16"], summary.Select(s => s.GetProperty("d_type").GetString()));
        long fp32 = summary[0].GetProperty("weight_bytes").GetInt64();
        Assert.Equal(4 * root.GetProperty("parameters").GetInt64(), fp32);
        Assert.Equal(fp32 / 2, summary[1].GetProperty("weight_bytes").GetInt64());
        // The file stores float32: mapped where that is the serving dtype, read and rounded for bfloat16.
        Assert.Equal([true, false], summary.Select(s => s.GetProperty("mapped").GetBoolean()));
        foreach (var s in summary)
        {
            Assert.True(s.GetProperty("warm_load_seconds").GetDouble() > 0, s.ToString());
            // Each child's peak is its own: the runtime and libtorch, then the weights on top.
            Assert.True(s.GetProperty("peak_rss_bytes").GetInt64() > s.GetProperty("weight_bytes").GetInt64(), s.ToString());
            Assert.True(s.GetProperty("baseline_rss_gb").GetDouble() > 0, s.ToString());
        }
        var loads = root.GetProperty("loads").EnumerateArray().ToList();
        // A warm load per dtype, and a cold one before it wherever the page cache can be evicted.
        Assert.Contains(loads.Count, new[] { 2, 4 });
        Assert.All(loads, l => Assert.Equal(l.GetProperty("d_type").GetString() == "float32", l.GetProperty("mapped").GetBoolean()));
        // Huge pages need blocks of 2 MiB; every weight of stories260K is smaller (LoadingTests covers larger ones).
        Assert.All(loads, l => Assert.Equal(0, l.GetProperty("huge_page_bytes").GetInt64()));
        // The identity is hashed beside the load and awaited after it, on the same clock.
        Assert.All(loads, l => Assert.True(l.GetProperty("identity_seconds").GetDouble() >= l.GetProperty("load_seconds").GetDouble(), l.ToString()));
        var read = Assert.Single(root.GetProperty("reads").EnumerateArray());
        Assert.True(read.GetProperty("warm_seconds").GetDouble() > 0, read.ToString());
    }

    [Fact]
    public async Task LoadBenchmarkPassesHugePagesToEveryLoadAndReportsWhatTheKernelGranted()
    {
        using var temp = new TempDir();
        string model = temp["large-vocabulary.bin"];
        // An embedding and an LM head of 41 MB each: always new memory (above glibc's largest mmap threshold), whose
        // page size the advice decides; each holds at least 18 whole huge pages wherever it lies.
        var config = new LlamaConfig(Dim: 256, HiddenDim: 688, Layers: 1, Heads: 8, KvHeads: 4, VocabSize: 40_000, MaxSeqLen: 32,
            TiedEmbedding: false, Rope: RopeStyle.Interleaved);
        SyntheticCheckpoint.Write(model, config, seed: 3);
        long wholePages = 2 * (40_000L * 256 * 4 / HugePages.Size - 1) * HugePages.Size;

        var granted = new Dictionary<bool, List<long>>();
        foreach (bool advise in new[] { true, false })
        {
            var file = temp[$"load-{advise}.json"];
            var run = await Spa.RunAsync("bench", "load", "--model", model, "--dtypes", "float32", "--repeats", "1",
                "--map-weights", "false", "--huge-pages", advise ? "true" : "false", "--json", file);
            Expect.Success(run);
            using var json = JsonDocument.Parse(File.ReadAllText(file));
            granted[advise] = [.. json.RootElement.GetProperty("loads").EnumerateArray().Select(l => l.GetProperty("huge_page_bytes").GetInt64())];
        }

        string mode = TransparentHugePages.Mode;
        Assert.All(granted[true], b => Assert.True(mode == "never" ? b == 0 : b >= wholePages, $"{b} bytes in huge pages, mode {mode}"));
        if (mode != "always") Assert.All(granted[false], b => Assert.Equal(0, b)); // "always" gives them unasked
    }

    [Theory]
    [InlineData("load --dtype bfloat16", "--dtypes")]
    [InlineData("load --dtypes int8", "int8")]
    [InlineData("load --repeats 0", "must be positive")]
    [InlineData("load --synthetic llama-9b", "llama-7b")]
    [InlineData("decode --synthetic llama-9b", "llama-7b")]
    [InlineData("decode --synthetic llama-7b --layers 0", "--layers must be positive")]
    [InlineData("decode --warm-up-rounds 0", "must be positive")]
    public async Task LoadDecodeAndSyntheticOptionsRejectBadArguments(string arguments, string phrase)
    {
        var run = await Spa.RunAsync(["bench", .. arguments.Split(' ')]);

        Expect.OneLineError(run, phrase, exitCode: 2);
    }

    [Fact]
    public async Task SyntheticAndModelCannotBothBeGiven()
    {
        using var temp = new TempDir();
        var run = await Spa.RunAsync("bench", "decode", "--synthetic", "llama-7b", "--model", SharedData.Stories260K, "--cache", temp.Path);

        Expect.OneLineError(run, "--synthetic and --model", exitCode: 2);
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Path));
    }

    [Theory]
    [InlineData("--shards 0", "--shards")]
    [InlineData("--shards 6", "at most 5 shards")]
    [InlineData("--sessions 0", "must be positive")]
    [InlineData("--repeats -1", "must be positive")]
    [InlineData("--warm-up-rounds 0", "must be positive")]
    [InlineData("--tokens 600", "context")]
    [InlineData("--sessions many", "many")]
    [InlineData("--json no-such-folder/cluster.json", "does not exist")]
    public async Task ClusterBenchmarkRejectsBadArguments(string arguments, string phrase)
    {
        var run = await Spa.RunAsync(["bench", "cluster", "--model", SharedData.Stories260K, .. arguments.Split(' ')]);

        Expect.OneLineError(run, phrase, exitCode: 2);
    }
}
