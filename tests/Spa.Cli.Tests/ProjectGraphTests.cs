using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Spa.Cli.Tests;

/// <summary>
/// The project graph shows the architecture, and stays so: read from the project files of the repository, every
/// reference must keep to the rules below.
/// </summary>
public sealed partial class ProjectGraphTests
{
    private static readonly string Root = FindRoot();

    private sealed record Project(string Name, string Path, bool IsExe, bool IsTest, IReadOnlyList<(string Name, bool Linked)> References, IReadOnlyList<string> Packages);

    private static readonly Lazy<IReadOnlyDictionary<string, Project>> Projects = new(Read);

    [Fact]
    public void EveryProjectIsInTheSolution()
    {
        var solution = File.ReadAllText(Path.Combine(Root, "SpaOrleans.sln"));
        foreach (var project in Projects.Value.Values)
            Assert.True(solution.Contains(Path.GetRelativePath(Root, project.Path).Replace('/', '\\'), StringComparison.Ordinal), $"{project.Name} is not in SpaOrleans.sln");
    }

    [Fact]
    public void NoProjectButATestLinksAnExecutable()
    {
        // A program another one runs (spa-load starts spa-device processes) is referenced for its output only.
        var broken = from project in Projects.Value.Values
                     where !project.IsTest
                     from reference in project.References
                     where reference.Linked && Projects.Value[reference.Name].IsExe
                     select $"{project.Name} -> {reference.Name}";
        Assert.Empty(broken);
    }

    [Fact]
    public void TheDeviceProgramDependsOnTheContractsTheEdgeRuntimeTheModelAndTheCommandLineOnly()
    {
        Assert.Subset(new HashSet<string> { "Spa.Grains.Abstractions", "Spa.Edge", "Spa.Model", "Spa.CommandLine" }, Closure("Spa.Device").ToHashSet());
        Assert.Contains("Spa.Edge", Closure("Spa.Device"));
    }

    [Fact]
    public void TheModelKnowsNothingOfOrleansAndTheContractsNothingOfTheImplementations()
    {
        Assert.Empty(Projects.Value["Spa.Model"].References);
        Assert.DoesNotContain(Projects.Value["Spa.Model"].Packages, p => p.StartsWith("Microsoft.Orleans", StringComparison.Ordinal));
        Assert.Empty(Projects.Value["Spa.Grains.Abstractions"].References);
    }

    [Fact]
    public void TheContractsHaveANamespaceOfTheirOwn()
    {
        foreach (var file in Directory.GetFiles(Path.Combine(Root, "grains", "Spa.Grains.Abstractions"), "*.cs"))
            Assert.Matches(Namespace(), File.ReadAllText(file));
        foreach (var file in Directory.GetFiles(Path.Combine(Root, "grains", "Spa.Grains"), "*.cs", SearchOption.AllDirectories).Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")))
            Assert.DoesNotMatch(Namespace(), File.ReadAllText(file));
    }

    [GeneratedRegex(@"(?m)^namespace Spa\.Grains\.Abstractions;")]
    private static partial Regex Namespace();

    /// <summary>Every project <paramref name="name"/> depends on, directly or not, through linked references.</summary>
    private static IEnumerable<string> Closure(string name)
    {
        var seen = new HashSet<string>();
        var pending = new Stack<string>([name]);
        while (pending.TryPop(out var next))
            foreach (var reference in Projects.Value[next].References.Where(r => r.Linked))
                if (seen.Add(reference.Name)) pending.Push(reference.Name);
        return seen;
    }

    private static IReadOnlyDictionary<string, Project> Read()
    {
        var files = new[] { "model", "grains", "silos", "clients", "tests" }
            .SelectMany(folder => Directory.GetFiles(Path.Combine(Root, folder), "*.csproj", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}node_modules{Path.DirectorySeparatorChar}"));
        return files.Select(path =>
        {
            var xml = XDocument.Load(path);
            var items = xml.Descendants();
            var references = items.Where(e => e.Name.LocalName == "ProjectReference")
                .Select(e => (Path.GetFileNameWithoutExtension(e.Attribute("Include")!.Value.Replace('\\', '/')),
                    !string.Equals(e.Attribute("ReferenceOutputAssembly")?.Value, "false", StringComparison.OrdinalIgnoreCase)))
                .ToArray();
            var packages = items.Where(e => e.Name.LocalName == "PackageReference").Select(e => e.Attribute("Include")!.Value).ToArray();
            bool exe = items.Any(e => e.Name.LocalName == "OutputType" && e.Value == "Exe");
            bool test = items.Any(e => e.Name.LocalName == "IsTestProject" && e.Value == "true") || Path.GetFileName(Path.GetDirectoryName(path)!) == "Spa.Testing";
            return new Project(Path.GetFileNameWithoutExtension(path), path, exe, test, references, packages);
        }).ToDictionary(p => p.Name);
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SpaOrleans.sln"))) return dir.FullName;
        throw new InvalidOperationException("SpaOrleans.sln not found above " + AppContext.BaseDirectory);
    }
}
