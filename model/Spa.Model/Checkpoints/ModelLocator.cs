namespace Spa.Model.Checkpoints;

/// <summary>
/// Where a model comes from when none is named: $SPA_MODEL, else stories260K in the shared data folder that sits
/// beside a clone of the repository (../shared/data). One rule for every program (the CLI and the silo host).
/// </summary>
public static class ModelLocator
{
    /// <summary>The environment variable naming the default model.</summary>
    public const string ModelVariable = "SPA_MODEL";

    /// <summary>The default model, relative to the shared data folder.</summary>
    public static readonly string DefaultModel = Path.Combine("models", "stories260K");

    /// <summary>The model path: <paramref name="named"/> when given, else $SPA_MODEL, else the shared stories260K; null when none is found.</summary>
    public static string? Resolve(string? named)
    {
        if (!string.IsNullOrWhiteSpace(named)) return named;
        var fromEnvironment = Environment.GetEnvironmentVariable(ModelVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment)) return fromEnvironment;
        return FindSharedData(DefaultModel);
    }

    /// <summary>
    /// The full path of <paramref name="relative"/> under ../shared/data beside the repository (found by walking up
    /// from the current directory, then from the program's directory, to the folder holding SpaOrleans.sln), or null.
    /// </summary>
    public static string? FindSharedData(string relative)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                if (!File.Exists(Path.Combine(dir.FullName, "SpaOrleans.sln"))) continue;
                var candidate = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "data", relative));
                if (Directory.Exists(candidate) || File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }
}
