using System.Text.Json;

namespace Spa.Model.Checkpoints;

/// <summary>
/// Reads a Hugging Face LLaMA checkpoint directory: config.json plus model.safetensors, or shards listed in
/// model.safetensors.index.json. Every tensor the config implies is checked for presence and shape before any is
/// loaded; tensors the model does not use (such as rotary_emb.inv_freq) are left unread.
/// </summary>
public static class HuggingFaceCheckpointReader
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>Every weight as fp32, in memory.</summary>
    public static Checkpoint Read(string dir) => Layout(dir).ReadAll();

    /// <summary>The config and where each tensor lies, from config.json and the safetensors headers; no weight is read.</summary>
    public static CheckpointLayout Layout(string dir)
    {
        string configPath = Path.Combine(dir, HuggingFaceConfig.FileName);
        var config = HuggingFaceConfig.Read(configPath);

        var files = OpenWeightFiles(dir);
        try
        {
            var location = Locate(files.Values, dir);
            if (!config.TiedEmbedding && !location.ContainsKey(WeightNames.LmHead))
                throw new InvalidDataException(
                    $"{configPath} sets tie_word_embeddings false but the checkpoint has no {WeightNames.LmHead}; "
                    + "set it to true if the output layer shares the embedding");

            var tensors = new List<StoredTensor>();
            foreach (var (name, shape) in WeightNames.Expected(config))
            {
                var file = location.TryGetValue(name, out var found) ? found
                    : throw new InvalidDataException($"{configPath} says {HuggingFaceConfig.Describe(config)}, which needs tensor {name}, but no weight file in {dir} has it");
                var entry = file.Entries[name];
                if (!entry.Shape.AsSpan().SequenceEqual(shape))
                    throw new InvalidDataException(
                        $"{configPath} says {HuggingFaceConfig.Describe(config)}, so tensor {name} should have shape "
                        + $"{TensorChecks.Format(shape)}, but it has shape {TensorChecks.Format(entry.Shape)}; the config does not match the weights");
                tensors.Add(new StoredTensor(name, shape, file.ElementType(name), file.Path, file.DataStart + entry.Begin));
            }
            return new CheckpointLayout(config, tensors, dir);
        }
        finally
        {
            foreach (var f in files.Values) f.Dispose();
        }
    }

    /// <summary>The weight files by file name: the single file, or every shard the index names.</summary>
    private static Dictionary<string, SafetensorsFile> OpenWeightFiles(string dir)
    {
        string single = Path.Combine(dir, SingleFile);
        var names = File.Exists(single) ? [SingleFile] : ShardNames(dir);
        var files = new Dictionary<string, SafetensorsFile>();
        try
        {
            foreach (var name in names) files[name] = SafetensorsFile.Open(Path.Combine(dir, name));
            return files;
        }
        catch
        {
            foreach (var f in files.Values) f.Dispose();
            throw;
        }
    }

    private static List<string> ShardNames(string dir)
    {
        string index = Path.Combine(dir, IndexFile);
        if (!File.Exists(index))
            throw new FileNotFoundException(
                $"{dir} has {HuggingFaceConfig.FileName} but neither {SingleFile} nor {IndexFile} (only safetensors weights are supported)", index);
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(index));
            var shards = document.RootElement.GetProperty("weight_map").EnumerateObject()
                .Select(p => p.Value.GetString() ?? throw new InvalidDataException($"{index}: weight_map entry {p.Name} is not a file name"))
                .Distinct().Order(StringComparer.Ordinal).ToList();
            // A shard name with a directory part could point outside the checkpoint.
            if (shards.FirstOrDefault(s => Path.GetFileName(s) != s) is { } bad)
                throw new InvalidDataException($"{index}: weight_map names {bad}, which is not a plain file name in the checkpoint directory");
            return shards;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{index} is not a valid index: it needs a \"weight_map\" object from tensor names to file names ({e.Message})", e);
        }
    }

    /// <summary>Which file holds each tensor, taken from the files' own headers so a stale index cannot misdirect a read.</summary>
    private static Dictionary<string, SafetensorsFile> Locate(IEnumerable<SafetensorsFile> files, string dir)
    {
        var location = new Dictionary<string, SafetensorsFile>();
        foreach (var file in files)
            foreach (var name in file.Entries.Keys)
                if (!location.TryAdd(name, file))
                    throw new InvalidDataException(
                        $"{dir}: tensor {name} is in both {Path.GetFileName(location[name].Path)} and {Path.GetFileName(file.Path)}");
        return location;
    }
}
