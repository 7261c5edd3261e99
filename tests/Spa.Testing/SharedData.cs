namespace Spa.Testing;

/// <summary>Paths into the shared data folder that sits beside the repository (../shared/data).</summary>
public static class SharedData
{
    /// <summary>The repository root: the folder above the tests that holds SpaOrleans.sln.</summary>
    public static string RepoRoot { get; } = LocateRepoRoot();

    public static string Root { get; } = Locate();

    public static string Stories260K => Path.Combine(Root, "models", "stories260K");
    public static string Stories260KBin => Path.Combine(Stories260K, "stories260K.bin");
    public static string Tok512 => Path.Combine(Stories260K, "tok512.bin");
    public static string LlamaTokenizerModel => Path.Combine(Root, "models", "llama2-tokenizer", "tokenizer.model");
    public static string Tasks => Path.Combine(Root, "tasks");

    /// <summary>llama2.c's greedy output for stories260K from BOS, 140 steps (ends with a newline).</summary>
    public static string ExpectedGreedyFromBos => File.ReadAllText(Path.Combine(Stories260K, "expected_greedy_from_BOS_140steps.txt"));

    private static string Locate()
    {
        var data = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data"));
        return Directory.Exists(data) ? data
            : throw new DirectoryNotFoundException($"the shared data folder is missing: expected {data} beside the repository");
    }

    private static string LocateRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SpaOrleans.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("could not find the repository root (SpaOrleans.sln) above " + AppContext.BaseDirectory);
    }
}
