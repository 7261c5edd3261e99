using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spa.CommandLine;
using Spa.Model;
using Spa.Model.Sampling;
using TorchSharp;

namespace Spa.Cli.Commands;

/// <summary><c>spa bench</c>: throughput benchmarks whose figures go into BENCHMARKS.md.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks.");
        bench.Subcommands.Add(Decode());
        bench.Subcommands.Add(BenchLoadCommand.Create());
        bench.Subcommands.Add(BenchTrainCommand.Create());
        bench.Subcommands.Add(BenchClusterCommand.Create());
        bench.Subcommands.Add(BenchPersistenceCommand.Create());
        bench.Subcommands.Add(BenchSoakCommand.Create());
        bench.Subcommands.Add(BenchMethodCommand.Create());
        return bench;
    }

    private static Command Decode()
    {
        var model = new ModelArguments();
        var synthetic = new SyntheticModelArguments();
        var tokens = new Option<int>("--tokens") { Description = $"Tokens each sequence decodes per measured run (default {SyntheticTokens} with --synthetic).", DefaultValueFactory = _ => 256 };
        var batches = new Option<int[]>("--batches") { Description = "Batch sizes to measure (default none with --synthetic).", DefaultValueFactory = _ => [8, 32, 64], AllowMultipleArgumentsPerToken = true };
        var repeats = new Option<int>("--repeats") { Description = "Measured runs per setting; the median is reported.", DefaultValueFactory = _ => 3 };
        var warmUp = ProcessWarmUp.RoundsOption("one run of every setting, as a measured run");
        var json = new Option<string?>("--json") { Description = "Write the figures to this JSON file." };

        var command = new Command("decode", "Greedy decoding throughput: one sequence, then batches decoding together; with a large model, against the memory-bandwidth bound.");
        model.AddTo(command);
        synthetic.AddTo(command);
        command.Options.Add(tokens);
        command.Options.Add(batches);
        command.Options.Add(repeats);
        command.Options.Add(warmUp);
        command.Options.Add(json);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            bool isSynthetic = synthetic.IsSynthetic(result);
            int length = isSynthetic && result.GetResult(tokens) is null or { Implicit: true } ? SyntheticTokens : result.GetValue(tokens);
            int runs = result.GetValue(repeats);
            var sizes = isSynthetic && result.GetResult(batches) is null or { Implicit: true } ? [] : result.GetValue(batches) ?? [];
            int mostWarmUpRounds = result.GetValue(warmUp);
            if (length <= 0 || runs <= 0 || mostWarmUpRounds <= 0 || sizes.Any(b => b <= 0))
                throw new UsageException("--tokens, --repeats, --warm-up-rounds and every --batches value must be positive");
            string path = synthetic.ResolvePath(result, model);
            var loading = Stopwatch.StartNew();
            using var llama = LlamaModel.Load(path, model.Options(result));
            double loadSeconds = loading.Elapsed.TotalSeconds;
            _ = llama.Identity; // hashed beside the load: finished before the measurement, so it does not share its cores
            var bound = Bound.Measure(llama, loadSeconds);
            if (bound is not null)
                Console.Error.WriteLine($"loaded {bound.WeightGb:F2} GB of weights in {loadSeconds:F2} s (peak resident {bound.PeakRssGb:F2} GB); "
                    + $"memory bandwidth {bound.TriadGbPerS:F1} GB/s on {torch.get_num_threads()} thread(s) bounds decoding at {bound.BoundTokensPerS:F1} tokens/s");
            if (length + BenchmarkPrompts.MaxTokens > llama.Config.MaxSeqLen) throw new UsageException($"--tokens must leave room for the prompt in the context of {llama.Config.MaxSeqLen}");

            var warmUpRounds = await ProcessWarmUp.RunAsync(mostWarmUpRounds, () =>
            {
                foreach (int size in sizes.Prepend(1)) Decode(llama, BenchmarkPrompts.Random(llama.Config, size, seed: size), length, cancellation);
                return Task.CompletedTask;
            }, Console.Error.WriteLine);
            Console.Error.WriteLine(ProcessWarmUp.Summary(warmUpRounds));
            var (single, singleTensors) = Measure(llama, 1, length, runs, cancellation);
            Console.Error.WriteLine($"single stream: {single:F1} tokens/s, " + (bound is null ? "" : $"{single / bound.BoundTokensPerS:P0} of the bandwidth bound, ") + singleTensors);
            var batched = new List<BatchFigure>();
            foreach (int size in sizes)
            {
                var (rate, tensors) = Measure(llama, size, length, runs, cancellation);
                batched.Add(new BatchFigure(size, Math.Round(rate, 1), tensors));
                Console.Error.WriteLine($"batch {size}: {rate:F1} tokens/s ({rate / single:F2}x single stream), {tensors}");
            }

            var report = new DecodeReport(
                Path.GetFileName(Path.TrimEndingDirectorySeparator(path)),
                Math.Round(single, 1), singleTensors, batched, length, runs, warmUpRounds,
                bound is null ? null : bound with { FractionOfBound = Math.Round(single / bound.BoundTokensPerS, 3) },
                Machine(llama, torch.get_num_threads()));
            var text = JsonSerializer.Serialize(report, JsonOptions);
            if (result.GetValue(json) is { } output) File.WriteAllText(output, text + Environment.NewLine);
            else Console.Out.WriteLine(text);
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Aggregate tokens/s of <paramref name="batch"/> sequences decoding <paramref name="length"/> tokens each, one forward
    /// per step for all of them. Every sequence runs its full length (end-of-sequence tokens are ignored) so that each
    /// step has the same batch. One warm-up run, then the median of the measured runs. Also counts the tensors the
    /// model's decoding steps create (the first step of a run prefills and is left out) and the tensors left alive
    /// once every run has ended, which must be none.
    /// </summary>
    private static (double TokensPerS, TensorFigure Tensors) Measure(LlamaModel model, int batch, int length, int runs, CancellationToken cancellation)
    {
        var prompts = BenchmarkPrompts.Random(model.Config, batch, seed: batch);
        var rates = new List<double>();
        long createdByDecodeSteps = 0;
        var atStart = TensorCount.OnCountedThreads();
        for (int run = 0; run <= runs; run++)
        {
            var (elapsed, created) = Decode(model, prompts, length, cancellation);
            createdByDecodeSteps += created;
            if (run > 0) rates.Add(batch * length / elapsed.TotalSeconds);
        }
        var tensors = new TensorFigure((double)createdByDecodeSteps / ((runs + 1) * (length - 1)), (TensorCount.OnCountedThreads() - atStart).Live);
        return (Median(rates), tensors);
    }

    /// <summary>One run: the prompts' sequences decode <paramref name="length"/> tokens each, greedily, one forward per step for all of them.</summary>
    private static (TimeSpan Elapsed, long CreatedByDecodeSteps) Decode(LlamaModel model, IReadOnlyList<IReadOnlyList<int>> prompts, int length, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        int batch = prompts.Count;
        using var cache = model.CreateCache(batch, Math.Min(model.Config.MaxSeqLen, BenchmarkPrompts.MaxTokens + length));
        var slots = Enumerable.Range(0, batch).ToArray();
        var inputs = prompts;
        long created = 0;
        var clock = Stopwatch.StartNew();
        for (int step = 0; step < length; step++)
        {
            var beforeStep = TensorCount.OnCountedThreads();
            using var logits = model.Step(cache, slots, inputs);
            if (step > 0) created += (TensorCount.OnCountedThreads() - beforeStep).Created;
            inputs = HostCopy.Rows(logits).Select(row => (IReadOnlyList<int>)[Sampler.ArgMax(row)]).ToArray();
        }
        return (clock.Elapsed, created);
    }

    /// <summary>The middle value; the mean of the two middle ones for an even count. Every benchmark reports its repeats so.</summary>
    internal static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>The machine facts every benchmark report carries; the load average tells how busy the machine was at the start.</summary>
    internal static MachineInfo Machine(LlamaModel model, int torchThreads) => Machine(model.Device.ToString(), model.DType.ToString(), torchThreads);

    internal static MachineInfo Machine(string device, string dtype, int torchThreads) =>
        new(Environment.ProcessorCount, torchThreads, CpuName(), RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription,
            LoadAverage(), device, dtype);

    internal static double? LoadAverage()
    {
        try
        {
            return double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    private static string CpuName()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown";
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private sealed record BatchFigure(int Batch, double TokensPerS, TensorFigure Tensors);

    /// <summary>Tensors created per decoding step (one step decodes a token of every sequence in the batch) and tensors left alive after the runs.</summary>
    private sealed record TensorFigure(double CreatedPerStep, long LeftAlive)
    {
        public override string ToString() => $"{CreatedPerStep:F1} tensors created per step, {LeftAlive} left alive";
    }
    internal sealed record MachineInfo(int Cores, int TorchThreads, string Cpu, string Os, string Runtime, double? LoadAverage, string Device, string Dtype);
    private sealed record DecodeReport(string Model, double SingleStreamTokensPerS, TensorFigure SingleStreamTensors, IReadOnlyList<BatchFigure> Batched,
        int TokensPerSequence, int Repeats, IReadOnlyList<WarmUpRound> WarmUp, Bound? BandwidthBound, MachineInfo Machine);

    private const int SyntheticTokens = 32;

    /// <summary>
    /// Decoding a token reads every weight once (the embedding table only by the row it looks up), so memory bandwidth
    /// over those bytes bounds a single stream's tokens/s. Measured only when the weights are too large for any cache
    /// (at least <see cref="MinimumBoundBytes"/>), on the threads torch decodes with.
    /// </summary>
    private sealed record Bound(double LoadSeconds, double WeightGb, double PeakRssGb, double BytesPerTokenGb, double TriadGbPerS, double BoundTokensPerS, double? FractionOfBound)
    {
        public static Bound? Measure(LlamaModel model, double loadSeconds)
        {
            long weights = model.WeightBytes;
            if (weights < MinimumBoundBytes || model.Device.type != DeviceType.CPU) return null;
            long perToken = weights - (model.Config.TiedEmbedding ? 0 : model.Embedding.NumberOfElements * model.Embedding.ElementSize);
            long loadedPeak = ProcessStatus.Bytes("VmHWM"); // before the bandwidth measurement's own arrays
            double triad = MemoryBandwidth.TriadGigabytesPerSecond(torch.get_num_threads());
            return new Bound(Math.Round(loadSeconds, 2), Math.Round(weights / 1e9, 3), Math.Round(loadedPeak / 1e9, 3),
                Math.Round(perToken / 1e9, 3), Math.Round(triad, 2), Math.Round(triad / (perToken / 1e9), 2), null);
        }
    }

    private const long MinimumBoundBytes = 256L << 20;
}
