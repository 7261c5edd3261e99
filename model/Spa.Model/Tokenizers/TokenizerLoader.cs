namespace Spa.Model.Tokenizers;

/// <summary>Opens a tokenizer file of either supported format, recognised by its content rather than its name.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// Loads the tokenizer at <paramref name="path"/> (a file, or a directory holding <c>tokenizer.model</c>,
    /// <c>tokenizer.bin</c> or a single <c>tok*.bin</c>) and checks it has the model's <paramref name="vocabSize"/> tokens.
    /// </summary>
    public static ITokenizer Load(string path, int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        var file = Directory.Exists(path) ? FindInDirectory(path)
            : File.Exists(path) ? path
            : throw new FileNotFoundException($"tokenizer {path} does not exist", path);
        var data = File.ReadAllBytes(file);

        ITokenizer tokenizer;
        if (Llama2cTokenizer.LooksLikeLlama2c(data))
            tokenizer = Llama2cTokenizer.Parse(data, vocabSize, file);
        else if (data.Length > 0 && data[0] == 0x0A) // a protobuf opening with field 1 (the pieces), length-delimited
            tokenizer = SentencePieceTokenizer.Parse(data, file);
        else
            throw new InvalidDataException($"{file} is not a llama2.c tokenizer file nor a SentencePiece model");

        if (tokenizer.VocabSize != vocabSize)
            throw new InvalidDataException($"{file} has {tokenizer.VocabSize} tokens but the model's vocabulary has {vocabSize}: the tokenizer belongs to another model");
        return tokenizer;
    }

    private static string FindInDirectory(string directory)
    {
        foreach (var name in new[] { "tokenizer.model", "tokenizer.bin" })
        {
            var file = Path.Combine(directory, name);
            if (File.Exists(file)) return file;
        }
        var candidates = Directory.GetFiles(directory, "tok*.bin");
        return candidates.Length switch
        {
            1 => candidates[0],
            0 => throw new FileNotFoundException($"no tokenizer in {directory}: expected tokenizer.model, tokenizer.bin or tok*.bin"),
            _ => throw new IOException($"several tokenizers in {directory} ({string.Join(", ", candidates.Select(Path.GetFileName).Order())}): pass the file instead"),
        };
    }
}
