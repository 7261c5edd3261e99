using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>One tensor as a checkpoint file stores it: which file, at which byte offset, in which element type.</summary>
public sealed record StoredTensor(string Name, long[] Shape, torch.ScalarType Type, string File, long Offset)
{
    public long Elements => Shape.Aggregate(1L, (product, d) => product * d);
    public long Bytes => Elements * StoredBytes.ElementSize(Type);
}

/// <summary>
/// A checkpoint as its headers describe it, before any weight is read: the config and where every tensor lies. The
/// weights are then read in file order straight into the tensors that keep them (<see cref="ReadInto"/>), each
/// converted chunk by chunk to the destination's type and device, so that loading never holds a second copy of the
/// model: peak memory is the weights in the serving dtype plus one chunk, and the time is close to reading the files.
/// </summary>
public sealed class CheckpointLayout
{
    // Small enough that a chunk just read is still in cache when it is checked and converted.
    private const long ChunkBytes = 4L << 20;

    public CheckpointLayout(LlamaConfig config, IReadOnlyList<StoredTensor> tensors, string source)
    {
        // Checkpoint files are little-endian, which is the in-memory layout only on little-endian machines.
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("checkpoint files are little-endian; big-endian machines are not supported");
        Config = config;
        Source = source;
        Tensors = tensors.ToDictionary(t => t.Name);
        var missing = WeightNames.Expected(config).Select(e => e.Name).Where(n => !Tensors.ContainsKey(n)).ToList();
        if (missing.Count > 0) throw new ArgumentException($"the layout of {source} lacks {string.Join(", ", missing.Take(3))}", nameof(tensors));
    }

    public LlamaConfig Config { get; }

    /// <summary>Where it was read from (a file or a directory), for messages.</summary>
    public string Source { get; }

    public IReadOnlyDictionary<string, StoredTensor> Tensors { get; }

    /// <summary>Parameters in the checkpoint (a tied LM head counted once).</summary>
    public long ParameterCount => WeightNames.Expected(Config).Sum(e => Tensors[e.Name].Elements);

    /// <summary>The bytes of every file the weights come from.</summary>
    public long FileBytes => Tensors.Values.Select(t => t.File).Distinct().Sum(LengthOf);

    /// <summary>
    /// The bytes of the file <paramref name="path"/> names, through symbolic links (Hugging Face's cache links every
    /// snapshot file to a blob), where <see cref="FileInfo.Length"/> gives the link's own length.
    /// </summary>
    public static long LengthOf(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return RandomAccess.GetLength(handle);
    }

    /// <summary>
    /// Reads every weight into the tensor <paramref name="destinationOf"/> gives for its name: contiguous, of the
    /// checkpoint's shape, of any floating type, on any device (a row range of a stacked projection is such a tensor). A
    /// non-finite weight stops the load, naming the tensor.
    /// </summary>
    public void ReadInto(Func<string, torch.Tensor> destinationOf, CancellationToken cancellation = default)
    {
        torch.Tensor? staging = null;
        try
        {
            foreach (var file in Tensors.Values.GroupBy(t => t.File))
            {
                using var handle = File.OpenHandle(file.Key, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
                foreach (var stored in file.OrderBy(t => t.Offset))
                {
                    cancellation.ThrowIfCancellationRequested();
                    using var scope = torch.NewDisposeScope();
                    var destination = destinationOf(stored.Name);
                    if (!destination.shape.SequenceEqual(stored.Shape) || !destination.is_contiguous())
                        throw new ArgumentException($"the destination of {stored.Name} is not a contiguous [{string.Join(", ", stored.Shape)}] tensor");
                    bool direct = destination.device_type == DeviceType.CPU && destination.dtype == stored.Type;
                    if (!direct && (staging is null || staging.dtype != stored.Type))
                    {
                        staging?.Dispose();
                        staging = torch.empty(ChunkBytes / StoredBytes.ElementSize(stored.Type), stored.Type).DetachFromDisposeScope();
                    }
                    Read(handle, stored, destination.view(-1), direct ? null : staging);
                }
            }
        }
        finally
        {
            staging?.Dispose();
        }
    }

    /// <summary>
    /// Every weight as a view of its file mapped into memory, in its stored type, as llama2.c's run.c and llama.cpp
    /// load: no weight is copied, the pages are the page cache's, shared with every process that maps the same file,
    /// and loading costs about one read of the cached file. Each view is read once here, to refuse non-finite weights,
    /// which also brings its pages in before the first token needs them. The mapping is private: a write to a weight
    /// copies its page and never reaches the file. A file changed in place while it is mapped changes the weights (or,
    /// cut short, ends the process), as with any mapped file; a checkpoint replaced by a new file is safe.
    /// Null when the weights cannot be viewed so: one is stored in another type than <paramref name="type"/>, or at an
    /// offset that is not a multiple of its element size.
    /// </summary>
    public Checkpoint? Map(torch.ScalarType type, CancellationToken cancellation = default)
    {
        long size = StoredBytes.ElementSize(type);
        if (Tensors.Values.Any(t => t.Type != type || t.Offset % size != 0)) return null;
        using var scope = torch.NewDisposeScope(); // frees the whole-file tensors, and every view if a check fails
        var files = Tensors.Values.Select(t => t.File).Distinct()
            .ToDictionary(f => f, f => torch.from_file(f, shared: false, size: LengthOf(f) / size, dtype: type));
        var views = new Dictionary<string, torch.Tensor>();
        foreach (var stored in Tensors.Values.OrderBy(t => t.File, StringComparer.Ordinal).ThenBy(t => t.Offset))
        {
            var flat = files[stored.File].narrow(0, stored.Offset / size, stored.Elements);
            for (long start = 0; start < stored.Elements; start += ChunkBytes / size)
            {
                cancellation.ThrowIfCancellationRequested();
                using var chunk = flat.narrow(0, start, Math.Min(ChunkBytes / size, stored.Elements - start));
                if (!StoredBytes.AllFinite(chunk.bytes, type)) throw NonFinite(stored);
            }
            views[stored.Name] = flat.view(stored.Shape);
        }
        foreach (var view in views.Values) view.DetachFromDisposeScope();
        return new Checkpoint(Config, views, Source);
    }

    /// <summary>Every weight as an fp32 CPU tensor, for the tools that work on a whole checkpoint (conversion, merging).</summary>
    public Checkpoint ReadAll()
    {
        var tensors = Tensors.Values.ToDictionary(t => t.Name, t => torch.empty(t.Shape, torch.ScalarType.Float32));
        try
        {
            ReadInto(name => tensors[name]);
            return new Checkpoint(Config, tensors, Source);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>The weights' identity (see <see cref="WeightIdentity"/>), hashed from the files, independently of any load.</summary>
    public string ComputeIdentity(CancellationToken cancellation = default)
    {
        var handles = Tensors.Values.Select(t => t.File).Distinct()
            .ToDictionary(f => f, f => File.OpenHandle(f, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan));
        try
        {
            var buffer = new byte[ChunkBytes];
            var widened = new byte[ChunkBytes * 2];
            return WeightIdentity.Compute(Config, (name, hash) =>
            {
                var stored = Tensors[name];
                for (long done = 0; done < stored.Bytes; done += ChunkBytes)
                {
                    cancellation.ThrowIfCancellationRequested();
                    var chunk = buffer.AsSpan(0, (int)Math.Min(ChunkBytes, stored.Bytes - done));
                    ReadExactly(handles[stored.File], chunk, stored.Offset + done, stored);
                    hash.AppendData(StoredBytes.AsFloat32(chunk, stored.Type, widened));
                }
            });
        }
        finally
        {
            foreach (var handle in handles.Values) handle.Dispose();
        }
    }

    /// <summary>flat: the destination viewed as one dimension. Without staging, the bytes land in it directly.</summary>
    private static void Read(SafeFileHandle handle, StoredTensor stored, torch.Tensor flat, torch.Tensor? staging)
    {
        long perChunk = ChunkBytes / StoredBytes.ElementSize(stored.Type);
        for (long start = 0; start < stored.Elements; start += perChunk)
        {
            long count = Math.Min(perChunk, stored.Elements - start);
            using var target = flat.narrow(0, start, count);
            using var staged = staging?.narrow(0, 0, count);
            var landing = staged ?? target;
            var bytes = landing.bytes;
            ReadExactly(handle, bytes, stored.Offset + start * StoredBytes.ElementSize(stored.Type), stored);
            if (!StoredBytes.AllFinite(bytes, stored.Type)) throw NonFinite(stored);
            if (staged is null) continue;
            if (target.device_type == DeviceType.CPU && stored.Type == torch.ScalarType.Float32 && target.dtype == torch.ScalarType.BFloat16)
                StoredBytes.RoundToBFloat16(bytes, target.bytes);
            else
                target.copy_(staged);
        }
    }

    private static InvalidDataException NonFinite(StoredTensor stored) =>
        new($"{Path.GetFileName(stored.File)}: tensor {stored.Name} contains non-finite values (NaN or infinity); the checkpoint is corrupted");

    private static void ReadExactly(SafeFileHandle handle, Span<byte> bytes, long offset, StoredTensor stored)
    {
        while (bytes.Length > 0)
        {
            int read = RandomAccess.Read(handle, bytes, offset);
            if (read == 0)
                throw new InvalidDataException($"{Path.GetFileName(stored.File)} ended inside tensor {stored.Name}; the file is truncated");
            bytes = bytes[read..];
            offset += read;
        }
    }
}
