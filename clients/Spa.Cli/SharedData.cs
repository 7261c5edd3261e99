namespace Spa.Cli;

/// <summary>The shared data folder that sits beside a clone of the repository (../shared/data): default model and tasks.</summary>
public static class SharedData
{
    /// <summary>The full path of <paramref name="relative"/> under ../shared/data beside the repository, or null.</summary>
    public static string? Find(string relative)
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
