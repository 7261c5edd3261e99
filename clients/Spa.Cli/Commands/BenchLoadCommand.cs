using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Spa.CommandLine;
using Spa.Model;
using Spa.Model.Checkpoints;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa bench load</c>: how long a checkpoint takes to load into the model and how much memory that needs, for each
/// serving dtype, against the time to read its files once, with the files first evicted from the page cache (cold)
/// and then cached (warm). Each load runs in its own process, so that its peak resident memory is its own.
/// </summary>
public static class BenchLoadCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var synthetic = new SyntheticModelArguments();
        var dtypes = new Option<string[]>("--dtypes") { Description = "Serving dtypes to load into.", DefaultValueFactory = _ => ["float32", "bfloat16"], AllowMultipleArgumentsPerToken = true };
        var repeats = new Option<int>("--repeats") { Description = "Measured rounds; the median is reported.", DefaultValueFactory = _ => 3 };
        var json = new Option<string?>("--json") { Description = "Write the figures to this JSON file." };
        var child = new Option<bool>("--in-process") { Description = "Load once in this process (used by the parent run).", Hidden = true };

        var command = new Command("load", "Load time and peak memory per serving dtype, against reading the checkpoint's files once (cold and warm).");
        model.AddTo(command);
        synthetic.AddTo(command);
        foreach (var option in new Option[] { dtypes, repeats, json, child })
            command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            if (result.GetValue(child))
            {
                var figure = await MeasureLoad(model.ResolvePath(result), model.Options(result));
                Console.Out.WriteLine(JsonSerializer.Serialize(figure, Compact));
                return 0;
            }

            if (result.GetResult(model.DType) is { Implicit: false })
                throw new UsageException("bench load measures every dtype of --dtypes; pass those instead of --dtype");
            var types = result.GetValue(dtypes) ?? [];
            int rounds = result.GetValue(repeats);
            if (types.Length == 0 || rounds <= 0) throw new UsageException("--dtypes needs at least one dtype and --repeats must be positive");
            foreach (var t in types) ModelArguments.ParseDType(t, "--dtypes");

            string path = synthetic.ResolvePath(result, model);
            var layout = CheckpointLoader.Open(path);
            var files = layout.Tensors.Values.Select(t => t.File).Distinct().ToList();
            long fileBytes = layout.FileBytes;
            Console.Error.WriteLine($"{layout.Source}: {fileBytes / 1e9:F2} GB in {files.Count} file(s), {layout.ParameterCount:N0} parameters");
            bool canEvict = PageCache.Evict(files);
            if (!canEvict) Console.Error.WriteLine("the page cache cannot be evicted here: cold figures are left out");

            var reads = new List<ReadFigure>();
            var loads = new List<LoadFigure>();
            for (int round = 1; round <= rounds; round++)
            {
                double? coldRead = canEvict && PageCache.Evict(files) ? ReadOnce(files, cancellation) : null;
                double warmRead = ReadOnce(files, cancellation);
                double freshRead = ReadIntoNewMemory(files, cancellation);
                reads.Add(new ReadFigure(round, coldRead, warmRead, freshRead));
                Console.Error.WriteLine($"round {round}: reading the files once takes {Seconds(coldRead)} cold, {warmRead:F2} s warm; "
                    + $"warm into newly allocated memory, {freshRead:F2} s");
                foreach (var dtype in types)
                {
                    foreach (bool cold in canEvict ? new[] { true, false } : [false])
                    {
                        if (cold) PageCache.Evict(files);
                        var args = BenchProcess.Arguments(result, ["bench", "load", "--in-process", "--model", path, "--dtype", dtype],
                            "--in-process", "--dtypes", "--repeats", "--json", "--model", "--synthetic", "--layers", "--cache");
                        var figure = BenchProcess.Run<LoadFigure>(args, $"{dtype} load", Compact, cancellation) with { Round = round, Cache = cold ? "cold" : "warm" };
                        loads.Add(figure);
                        double read = cold ? coldRead!.Value : warmRead;
                        Console.Error.WriteLine($"  {dtype,-9} {figure.Cache}: {How(figure.Mapped)} in {figure.LoadSeconds:F2} s ({fileBytes / 1e9 / figure.LoadSeconds:F2} GB/s, "
                            + $"{figure.LoadSeconds / read:F2}x the read), identity after {figure.IdentitySeconds:F2} s, peak {figure.PeakRssBytes / 1e9:F2} GB "
                            + $"= {(double)figure.PeakRssBytes / figure.WeightBytes:F2}x the weights ({figure.WeightBytes / 1e9:F2} GB, {figure.HugePageBytes / 1e9:F2} GB of them in huge pages)");
                    }
                }
            }

            var summary = types.Select(dtype => Summarise(dtype, loads.Where(l => l.DType == dtype).ToList(), reads, fileBytes)).ToList();
            var baseline = summary[0];
            foreach (var s in summary)
                Console.Error.WriteLine($"{s.DType,-9} {How(s.Mapped)}, median {Seconds(s.ColdLoadSeconds)} cold ({Ratio(s.ColdLoadOverRead)} the read), {s.WarmLoadSeconds:F2} s warm ({s.WarmLoadOverRead:F2}x the read, "
                    + $"{s.WarmLoadOverNewMemoryRead:F2}x the read into new memory), "
                    + $"peak {s.PeakRssBytes / 1e9:F2} GB = {s.PeakOverWeights:F2}x the weights, {(double)s.PeakRssBytes / baseline.PeakRssBytes:F2}x {baseline.DType}'s peak");

            var report = new LoadReport(Path.GetFileName(Path.TrimEndingDirectorySeparator(path)), fileBytes, layout.ParameterCount, summary, reads, loads,
                BenchCommand.Machine(model.Options(result).TorchDevice.ToString(), string.Join(",", types),
                    model.Options(result).Threads is > 0 and var threads ? threads : TorchSharp.torch.get_num_threads()));
            var text = JsonSerializer.Serialize(report, BenchCommand.JsonOptions);
            if (result.GetValue(json) is { } output) File.WriteAllText(output, text + Environment.NewLine);
            else Console.Out.WriteLine(text);
            return 0;
        });
        return command;
    }

    private static async Task<LoadFigure> MeasureLoad(string path, ModelOptions options)
    {
        _ = TorchSharp.torch.get_num_threads(); // libtorch is loaded before the baseline, which then counts it
        long baseline = ProcessStatus.Bytes("VmRSS");
        var clock = Stopwatch.StartNew();
        using var model = LlamaModel.Load(path, options);
        double load = clock.Elapsed.TotalSeconds;
        await model.IdentityAsync();
        double identity = clock.Elapsed.TotalSeconds;
        return new LoadFigure(0, "", options.DType, model.Mapped, load, identity, model.WeightBytes, HugePages.BackedBytes(model.Weights), baseline, ProcessStatus.Bytes("VmHWM"));
    }

    private static LoadSummary Summarise(string dtype, List<LoadFigure> loads, List<ReadFigure> reads, long fileBytes)
    {
        // Cold loads exist only where the page cache can be evicted; warm ones always.
        var cold = loads.Where(l => l.Cache == "cold").ToList();
        var warm = loads.Where(l => l.Cache == "warm").ToList();
        double OverRead(List<LoadFigure> measured, Func<ReadFigure, double?> read) =>
            BenchCommand.Median(measured.Select(l => l.LoadSeconds / read(reads.Single(r => r.Round == l.Round))!.Value));
        double warmSeconds = BenchCommand.Median(warm.Select(l => l.LoadSeconds));
        long peak = (long)BenchCommand.Median(loads.Select(l => (double)l.PeakRssBytes));
        long weights = loads[0].WeightBytes;
        return new LoadSummary(dtype, loads[0].Mapped, weights,
            cold.Count == 0 ? null : BenchCommand.Median(cold.Select(l => l.LoadSeconds)), cold.Count == 0 ? null : OverRead(cold, r => r.ColdSeconds),
            warmSeconds, OverRead(warm, r => r.WarmSeconds), OverRead(warm, r => r.WarmIntoNewMemorySeconds),
            fileBytes / 1e9 / warmSeconds,
            BenchCommand.Median(loads.Select(l => l.IdentitySeconds)), peak, (double)peak / weights,
            BenchCommand.Median(loads.Select(l => (double)l.BaselineRssBytes)) / 1e9);
    }

    /// <summary>Seconds to read the files from start to end once, as a loader that only reads would.</summary>
    private static double ReadOnce(IEnumerable<string> files, CancellationToken cancellation)
    {
        var buffer = new byte[16 << 20];
        var clock = Stopwatch.StartNew();
        foreach (var file in files)
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            while (stream.Read(buffer) > 0) cancellation.ThrowIfCancellationRequested();
        }
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Seconds to read the cached files into one newly allocated tensor of their size, advised as huge pages as the read
    /// loader's weights are (<see cref="HugePages"/>): what any loader that does not map the files pays at least, since
    /// the kernel must hand it fresh pages (on a virtual machine, pages the guest has not used yet can cost the host a
    /// fault each).
    /// </summary>
    private static double ReadIntoNewMemory(IEnumerable<string> files, CancellationToken cancellation)
    {
        const long chunk = 16L << 20;
        var clock = Stopwatch.StartNew();
        foreach (var file in files)
        {
            using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            long length = RandomAccess.GetLength(handle); // the file's, through a symbolic link
            using var memory = TorchSharp.torch.empty(length, TorchSharp.torch.ScalarType.Byte);
            HugePages.Advise(memory);
            for (long offset = 0; offset < length;)
            {
                cancellation.ThrowIfCancellationRequested();
                using var part = memory.narrow(0, offset, Math.Min(chunk, length - offset));
                int read = RandomAccess.Read(handle, part.bytes, offset);
                if (read == 0) throw new IOException($"{file} ended while it was being read");
                offset += read;
            }
        }
        return clock.Elapsed.TotalSeconds;
    }

    private static string How(bool mapped) => mapped ? "mapped" : "read";

    private static string Seconds(double? s) => s is { } v ? $"{v:F2} s" : "n/a";
    private static string Ratio(double? r) => r is { } v ? $"{v:F2}x" : "n/a";

    private static readonly JsonSerializerOptions Compact = new(BenchCommand.JsonOptions) { WriteIndented = false };

    /// <summary>The files' pages dropped from the kernel's page cache (written back first), so the next read goes to the disk.</summary>
    private static class PageCache
    {
        private const int DontNeed = 4; // POSIX_FADV_DONTNEED

        public static bool Evict(IEnumerable<string> files)
        {
            if (!OperatingSystem.IsLinux()) return false;
            foreach (var file in files)
            {
                using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read);
                int fd = (int)handle.DangerousGetHandle();
                if (fsync(fd) != 0 || posix_fadvise(fd, 0, 0, DontNeed) != 0) return false;
            }
            return true;
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        private static extern int posix_fadvise(int fd, long offset, long length, int advice);
    }

    private sealed record ReadFigure(int Round, double? ColdSeconds, double WarmSeconds, double WarmIntoNewMemorySeconds);
    internal sealed record LoadFigure(int Round, string Cache, string DType, bool Mapped, double LoadSeconds, double IdentitySeconds, long WeightBytes, long HugePageBytes, long BaselineRssBytes, long PeakRssBytes);
    private sealed record LoadSummary(string DType, bool Mapped, long WeightBytes, double? ColdLoadSeconds, double? ColdLoadOverRead, double WarmLoadSeconds, double WarmLoadOverRead, double WarmLoadOverNewMemoryRead,
        double WarmGigabytesPerS, double IdentitySeconds, long PeakRssBytes, double PeakOverWeights, double BaselineRssGb);
    private sealed record LoadReport(string Model, long FileBytes, long Parameters, IReadOnlyList<LoadSummary> Summary, IReadOnlyList<ReadFigure> Reads,
        IReadOnlyList<LoadFigure> Loads, BenchCommand.MachineInfo Machine);
}
