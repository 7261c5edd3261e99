using System.Text.Json;
using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>Converts a llama2.c checkpoint into the Hugging Face layout that production checkpoints use.</summary>
public static class HuggingFaceConverter
{
    // transformers refuses a safetensors file whose format metadata is not one it knows; "pt" is PyTorch's.
    private static readonly Dictionary<string, string> Metadata = new() { ["format"] = "pt" };

    /// <summary>
    /// Writes config.json, the weights in <paramref name="stored"/> (in shards of at most <paramref name="shardBytes"/> each, with an index,
    /// when given and the weights exceed it) and a copy of the tokenizer found beside <paramref name="source"/>.
    /// Everything is written to a sibling staging directory first and renamed into place at the end, so a failed
    /// conversion leaves no half-written checkpoint behind.
    /// </summary>
    public static void FromLlama2c(string source, string outDir, long? shardBytes = null, bool overwrite = false,
        SafetensorsDtype stored = SafetensorsDtype.F32)
    {
        if (shardBytes is <= 0)
            throw new ArgumentOutOfRangeException(nameof(shardBytes), shardBytes, "a shard size must be positive");
        string target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir));
        if (File.Exists(target))
            throw new IOException($"{outDir} is a file; expected a directory to write the Hugging Face checkpoint into");
        if (!overwrite && Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            throw new IOException($"{outDir} is not empty; refusing to overwrite it unless asked to");

        using var checkpoint = CheckpointLoader.Load(source);
        if (checkpoint.Config.Rope != RopeStyle.Interleaved)
            throw new ArgumentException($"{source} is not a llama2.c checkpoint: its q and k rows are already laid out for rotate-half RoPE", nameof(source));
        string? tokenizer = CheckpointLoader.FindTokenizer(source);

        string staging = $"{target}.converting-{Guid.NewGuid():N}";
        Directory.CreateDirectory(staging);
        try
        {
            WriteCheckpoint(checkpoint, staging, shardBytes ?? long.MaxValue, stored);
            if (tokenizer != null) File.Copy(tokenizer, Path.Combine(staging, Path.GetFileName(tokenizer)));
            if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
            Directory.Move(staging, target);
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
    }

    private static void WriteCheckpoint(Checkpoint checkpoint, string dir, long shardBytes, SafetensorsDtype stored)
    {
        var config = checkpoint.Config with { Rope = RopeStyle.RotateHalf };
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, torch.Tensor>(checkpoint.Tensors);
        for (int layer = 0; layer < config.Layers; layer++)
        {
            tensors[WeightNames.Query(layer)] = PermuteForRotateHalf(tensors[WeightNames.Query(layer)], config.Heads);
            tensors[WeightNames.Key(layer)] = PermuteForRotateHalf(tensors[WeightNames.Key(layer)], config.KvHeads);
        }

        HuggingFaceConfig.Write(Path.Combine(dir, HuggingFaceConfig.FileName), config, stored);
        long Bytes(torch.Tensor t) => t.numel() * SafetensorsFile.ElementBytes(stored);
        var shards = Shard(WeightNames.Expected(config).Select(e => e.Name), tensors, shardBytes, Bytes);
        if (shards.Count == 1)
        {
            SafetensorsFile.Write(Path.Combine(dir, HuggingFaceCheckpointReader.SingleFile), tensors, stored, Metadata);
            return;
        }
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            SafetensorsFile.Write(Path.Combine(dir, file), shards[i].ToDictionary(name => name, name => tensors[name]), stored, Metadata);
            foreach (var name in shards[i]) weightMap[name] = file;
        }
        WriteIndex(Path.Combine(dir, HuggingFaceCheckpointReader.IndexFile), tensors.Values.Sum(Bytes), weightMap);
    }

    /// <summary>
    /// The permutation of Hugging Face's convert_llama_weights_to_hf.py. Within each head, the rows producing pair
    /// (2i, 2i+1) move to rows (i, i + headDim/2), so rotate-half RoPE rotates the same values interleaved RoPE did.
    /// </summary>
    private static torch.Tensor PermuteForRotateHalf(torch.Tensor w, int heads)
    {
        long rows = w.shape[0], cols = w.shape[1];
        return w.view(heads, rows / heads / 2, 2, cols).transpose(1, 2).reshape(rows, cols);
    }

    /// <summary>Fills shards in checkpoint order, so a layer's tensors stay together; a tensor larger than a shard gets its own.</summary>
    private static List<List<string>> Shard(IEnumerable<string> names, Dictionary<string, torch.Tensor> tensors, long shardBytes,
        Func<torch.Tensor, long> bytesOf)
    {
        var shards = new List<List<string>> { new() };
        long filled = 0;
        foreach (var name in names)
        {
            long bytes = bytesOf(tensors[name]);
            if (filled > 0 && filled + bytes > shardBytes)
            {
                shards.Add([]);
                filled = 0;
            }
            shards[^1].Add(name);
            filled += bytes;
        }
        return shards;
    }

    private static void WriteIndex(string path, long totalBytes, SortedDictionary<string, string> weightMap)
    {
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteStartObject("metadata");
        json.WriteNumber("total_size", totalBytes);
        json.WriteEndObject();
        json.WriteStartObject("weight_map");
        foreach (var (name, file) in weightMap) json.WriteString(name, file);
        json.WriteEndObject();
        json.WriteEndObject();
    }
}
