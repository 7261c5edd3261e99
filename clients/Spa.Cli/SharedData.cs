using Spa.Model.Checkpoints;

namespace Spa.Cli;

/// <summary>The shared data folder that sits beside a clone of the repository (../shared/data): default model and tasks.</summary>
public static class SharedData
{
    /// <summary>The full path of <paramref name="relative"/> under ../shared/data beside the repository, or null (see <see cref="ModelLocator"/>).</summary>
    public static string? Find(string relative) => ModelLocator.FindSharedData(relative);
}
