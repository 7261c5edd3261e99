using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>The element types this reader loads (as fp32) and this writer writes; the names are the format's own.</summary>
public enum SafetensorsDtype { F32, F16, BF16 }

/// <summary>One tensor's header entry. Offsets are relative to the data section that follows the header.</summary>
public sealed record SafetensorsEntry(string Dtype, long[] Shape, long Begin, long End);

/// <summary>
/// A .safetensors file (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a JSON
/// header mapping each tensor name to its dtype, shape and byte range (plus optional string metadata), then the raw
/// little-endian data. Opening checks the whole header against the file, so a corrupted file fails before any
/// tensor is allocated.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    private const string MetadataKey = "__metadata__";

    // The reference implementation's limit; a larger length means a corrupted file, not a real header.
    private const long MaxHeaderBytes = 100_000_000;

    private readonly FileStream _stream;
    private readonly long _dataStart;

    private SafetensorsFile(string path, FileStream stream, long dataStart,
        IReadOnlyDictionary<string, SafetensorsEntry> entries, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _stream = stream;
        _dataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private string FileName => System.IO.Path.GetFileName(Path);

    public static SafetensorsFile Open(string path)
    {
        var stream = File.OpenRead(path);
        try
        {
            string file = System.IO.Path.GetFileName(path);
            Span<byte> lengthBytes = stackalloc byte[sizeof(ulong)];
            if (stream.Length < lengthBytes.Length)
                throw new InvalidDataException($"{file}: size {stream.Length} bytes is too small for a safetensors file");
            stream.ReadExactly(lengthBytes);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            long available = stream.Length - lengthBytes.Length;
            if (headerLength > (ulong)Math.Min(available, MaxHeaderBytes))
                throw new InvalidDataException(
                    $"{file}: header length {headerLength} does not fit in the file ({stream.Length} bytes); the file is truncated or not safetensors");
            var header = new byte[headerLength];
            stream.ReadExactly(header);
            long dataStart = lengthBytes.Length + (long)headerLength;
            var (entries, metadata) = ParseHeader(header, stream.Length - dataStart, file);
            return new SafetensorsFile(path, stream, dataStart, entries, metadata);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Where the data section starts in the file; an entry's offsets count from here.</summary>
    public long DataStart => _dataStart;

    /// <summary>The element type a tensor is stored in; refused unless F32, F16 or BF16.</summary>
    public torch.ScalarType ElementType(string name)
    {
        if (!Entries.TryGetValue(name, out var entry))
            throw new KeyNotFoundException($"{FileName}: no tensor named {name}");
        var dtype = ParseDtype(entry.Dtype)
            ?? throw new InvalidDataException($"{FileName}: tensor {name} has dtype {entry.Dtype}; only F32, F16 and BF16 can be loaded");
        return ScalarType(dtype);
    }

    /// <summary>Reads one tensor as an fp32 CPU tensor.</summary>
    public torch.Tensor Read(string name)
    {
        var type = ElementType(name);
        var entry = Entries[name];
        var stored = torch.empty(entry.Shape, type);
        try
        {
            _stream.Position = _dataStart + entry.Begin;
            TensorStreams.ReadExactly(_stream, stored);
        }
        catch
        {
            stored.Dispose();
            throw;
        }
        if (stored.dtype == torch.ScalarType.Float32) return stored;
        using (stored) return stored.to_type(torch.ScalarType.Float32);
    }

    /// <summary>
    /// Writes the tensors, converted to <paramref name="dtype"/>, with header keys and data in ordinal name order.
    /// The header is padded with spaces, as the format allows, so the data starts 8-byte aligned.
    /// </summary>
    public static void Write(string path, IReadOnlyDictionary<string, torch.Tensor> tensors,
        SafetensorsDtype dtype = SafetensorsDtype.F32, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (tensors.ContainsKey(MetadataKey))
            throw new ArgumentException($"{MetadataKey} is reserved by the format and cannot name a tensor", nameof(tensors));
        var names = tensors.Keys.Order(StringComparer.Ordinal).ToList();
        byte[] header = BuildHeader(names, tensors, dtype, metadata);
        int padding = (8 - header.Length % 8) % 8;

        using var stream = File.Create(path);
        Span<byte> lengthBytes = stackalloc byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(lengthBytes, (ulong)(header.Length + padding));
        stream.Write(lengthBytes);
        stream.Write(header);
        for (int i = 0; i < padding; i++) stream.WriteByte((byte)' ');

        foreach (var name in names)
        {
            // The scope frees the converted copy; a tensor already in the right form comes back as itself, untouched.
            using var scope = torch.NewDisposeScope();
            var stored = tensors[name].detach().cpu().to_type(ScalarType(dtype)).contiguous();
            if (dtype != SafetensorsDtype.F32 && !stored.isfinite().all().item<bool>())
                throw new ArgumentException($"tensor {name} has values that {dtype} cannot represent (out of range, NaN or infinity)", nameof(tensors));
            TensorStreams.Write(stream, stored);
        }
    }

    public void Dispose() => _stream.Dispose();

    private static byte[] BuildHeader(List<string> names, IReadOnlyDictionary<string, torch.Tensor> tensors,
        SafetensorsDtype dtype, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata != null)
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var name in names)
            {
                var tensor = tensors[name];
                long bytes = tensor.numel() * ElementBytes(dtype);
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.ToString());
                json.WriteStartArray("shape");
                foreach (long d in tensor.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>) ParseHeader(byte[] header, long dataBytes, string file)
    {
        InvalidDataException Corrupt(string what) => new($"{file}: {what}; the safetensors header is corrupted");

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{file}: the safetensors header is not valid JSON ({e.Message})", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw Corrupt("the header is not a JSON object");
            var entries = new Dictionary<string, SafetensorsEntry>();
            var metadata = new Dictionary<string, string>();
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    if (property.Value.ValueKind != JsonValueKind.Object) throw Corrupt($"{MetadataKey} is not an object");
                    foreach (var item in property.Value.EnumerateObject())
                        metadata[item.Name] = item.Value.ValueKind == JsonValueKind.String
                            ? item.Value.GetString()!
                            : throw Corrupt($"{MetadataKey} value {item.Name} is not a string");
                    continue;
                }
                var entry = ParseEntry(property, Corrupt);
                if (!entries.TryAdd(property.Name, entry)) throw Corrupt($"tensor {property.Name} appears twice");
            }
            CheckDataLayout(entries, dataBytes, Corrupt);
            return (entries, metadata);
        }
    }

    private static SafetensorsEntry ParseEntry(JsonProperty property, Func<string, InvalidDataException> corrupt)
    {
        string name = property.Name;
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array)
            throw corrupt($"tensor {name} lacks a dtype string, a shape array or a data_offsets array");

        long[] dims = [.. shape.EnumerateArray().Select(d => NonNegative(d, $"tensor {name} shape", corrupt))];
        long[] range = [.. offsets.EnumerateArray().Select(d => NonNegative(d, $"tensor {name} data_offsets", corrupt))];
        if (range.Length != 2 || range[0] > range[1])
            throw corrupt($"tensor {name} has data_offsets [{string.Join(", ", range)}], not a [begin, end] pair");

        var entry = new SafetensorsEntry(dtype.GetString()!, dims, range[0], range[1]);
        // Only a dtype this class can load has a known element size here; others are checked when read (and refused).
        if (ParseDtype(entry.Dtype) is { } known)
        {
            long elements = 1;
            try
            {
                foreach (long d in dims) elements = checked(elements * d);
                elements = checked(elements * ElementBytes(known));
            }
            catch (OverflowException)
            {
                throw corrupt($"tensor {name} has an impossibly large shape {TensorChecks.Format(dims)}");
            }
            if (elements != entry.End - entry.Begin)
                throw corrupt($"tensor {name} of shape {TensorChecks.Format(dims)} and dtype {entry.Dtype} needs {elements} bytes "
                    + $"but its data_offsets span {entry.End - entry.Begin}");
        }
        return entry;
    }

    /// <summary>As the reference implementation demands, the byte ranges must tile the data section: no gaps, no overlaps, nothing after.</summary>
    private static void CheckDataLayout(Dictionary<string, SafetensorsEntry> entries, long dataBytes, Func<string, InvalidDataException> corrupt)
    {
        long cursor = 0;
        foreach (var (name, entry) in entries.OrderBy(e => e.Value.Begin).ThenBy(e => e.Value.End))
        {
            if (entry.Begin != cursor)
                throw corrupt($"tensor {name} starts at data offset {entry.Begin}, expected {cursor} (a gap or an overlap)");
            cursor = entry.End;
        }
        if (cursor != dataBytes)
            throw corrupt($"the tensors cover {cursor} bytes of data but the file holds {dataBytes} after the header (truncated or trailing bytes)");
    }

    private static long NonNegative(JsonElement element, string what, Func<string, InvalidDataException> corrupt) =>
        element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out long v) && v >= 0
            ? v
            : throw corrupt($"{what} holds {element.GetRawText()}, not a non-negative integer");

    private static SafetensorsDtype? ParseDtype(string dtype) => dtype switch
    {
        "F32" => SafetensorsDtype.F32,
        "F16" => SafetensorsDtype.F16,
        "BF16" => SafetensorsDtype.BF16,
        _ => null,
    };

    private static torch.ScalarType ScalarType(SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.F32 => torch.ScalarType.Float32,
        SafetensorsDtype.F16 => torch.ScalarType.Float16,
        SafetensorsDtype.BF16 => torch.ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    internal static int ElementBytes(SafetensorsDtype dtype) => dtype == SafetensorsDtype.F32 ? 4 : 2;

    /// <summary>The stored type of tensors of <paramref name="type"/>.</summary>
    public static SafetensorsDtype Of(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float32 => SafetensorsDtype.F32,
        torch.ScalarType.Float16 => SafetensorsDtype.F16,
        torch.ScalarType.BFloat16 => SafetensorsDtype.BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "safetensors checkpoints here store float32, float16 or bfloat16"),
    };

    /// <summary>The type's name in PyTorch and in config.json's torch_dtype.</summary>
    internal static string TorchName(SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.F16 => "float16",
        SafetensorsDtype.BF16 => "bfloat16",
        _ => "float32",
    };
}
