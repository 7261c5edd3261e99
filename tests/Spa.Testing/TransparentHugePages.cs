namespace Spa.Testing;

/// <summary>The kernel's transparent huge page mode, which decides what advising memory as huge pages does.</summary>
public static class TransparentHugePages
{
    private const string Setting = "/sys/kernel/mm/transparent_hugepage/enabled";

    /// <summary>"always", "madvise" or "never" (the bracketed word of "always [madvise] never"); "never" without the setting.</summary>
    public static string Mode => File.Exists(Setting) ? File.ReadAllText(Setting).Split('[', ']')[1] : "never";
}
