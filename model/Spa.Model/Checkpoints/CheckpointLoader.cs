namespace Spa.Model.Checkpoints;

/// <summary>
/// Opens a checkpoint from whatever a model path points at: a llama2.c .bin file, a Hugging Face directory
/// (config.json), or a directory holding one llama2.c .bin beside its tokenizer.
/// </summary>
public static class CheckpointLoader
{
    private const string Expectation =
        "expected a llama2.c .bin checkpoint, a Hugging Face directory (config.json with safetensors weights), "
        + "or a directory holding one llama2.c .bin checkpoint";

    /// <summary>Every weight as fp32, in memory.</summary>
    public static Checkpoint Load(string path) => Open(path).ReadAll();

    /// <summary>The config and where each tensor lies, from the headers; no weight is read.</summary>
    public static CheckpointLayout Open(string path)
    {
        if (Directory.Exists(path))
        {
            return File.Exists(Path.Combine(path, HuggingFaceConfig.FileName))
                ? HuggingFaceCheckpointReader.Layout(path)
                : Llama2cCheckpointReader.Layout(SingleLlama2cFile(path));
        }
        if (File.Exists(path))
        {
            if (!path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"model path {path} is a file but not a .bin; {Expectation}", nameof(path));
            return Llama2cCheckpointReader.Layout(path);
        }
        throw new FileNotFoundException($"model path {path} does not exist; {Expectation}", path);
    }

    /// <summary>
    /// The tokenizer that belongs to a model path: tokenizer.model, else tokenizer.bin, else the one tok*.bin
    /// (llama2.c's naming, like tok512.bin), looked up in the directory itself or, for a file, beside it.
    /// Null when there is none.
    /// </summary>
    public static string? FindTokenizer(string modelPath)
    {
        string? dir = Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath));
        if (dir == null || !Directory.Exists(dir)) return null;
        foreach (var name in new[] { "tokenizer.model", "tokenizer.bin" })
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        var candidates = Directory.GetFiles(dir, "tok*.bin");
        return candidates.Length switch
        {
            0 => null,
            1 => candidates[0],
            _ => throw new InvalidDataException(
                $"{dir} holds several llama2.c tokenizers ({string.Join(", ", candidates.Select(Path.GetFileName).Order(StringComparer.Ordinal))}); keep one"),
        };
    }

    private static string SingleLlama2cFile(string dir)
    {
        var checkpoints = Directory.GetFiles(dir, "*.bin").Where(f => !IsTokenizerFile(f)).ToList();
        return checkpoints.Count switch
        {
            1 => checkpoints[0],
            0 => throw new FileNotFoundException($"{dir} holds neither {HuggingFaceConfig.FileName} nor a llama2.c .bin checkpoint; {Expectation}", dir),
            _ => throw new ArgumentException(
                $"{dir} holds several .bin checkpoints ({string.Join(", ", checkpoints.Select(Path.GetFileName).Order(StringComparer.Ordinal))}); pass the file itself"),
        };
    }

    private static bool IsTokenizerFile(string path) => Path.GetFileName(path).StartsWith("tok", StringComparison.Ordinal);
}
