using System.CommandLine;
using Spa.CommandLine;
using Spa.Model.Checkpoints;

namespace Spa.Cli.Commands;

/// <summary>
/// The benchmark options that stand a synthetic checkpoint (a published model's shapes, random weights) in for
/// --model: <c>--synthetic llama-7b --layers 2</c>. The file is written once to a cache folder and reused.
/// </summary>
public sealed class SyntheticModelArguments
{
    public Option<string?> Synthetic { get; } = new("--synthetic")
    {
        Description = $"Measure a checkpoint of this model's shapes with random weights instead of --model: {string.Join(", ", SyntheticCheckpoint.Shapes.Keys)}.",
    };

    public Option<int> Layers { get; } = new("--layers")
    {
        Description = "Layers of the --synthetic checkpoint.",
        DefaultValueFactory = _ => 2,
    };

    public Option<string?> Cache { get; } = new("--cache")
    {
        Description = "Where --synthetic checkpoints are written once and kept. Default: $XDG_CACHE_HOME/spa/synthetic, else ~/.cache/spa/synthetic.",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Synthetic);
        command.Options.Add(Layers);
        command.Options.Add(Cache);
    }

    public bool IsSynthetic(ParseResult result) => result.GetValue(Synthetic) is not null;

    /// <summary>The synthetic checkpoint's path (written now if it is not cached), else the model path.</summary>
    public string ResolvePath(ParseResult result, ModelArguments model)
    {
        if (result.GetValue(Synthetic) is not { } shape) return model.ResolvePath(result);
        if (result.GetResult(model.Model) is { Implicit: false })
            throw new UsageException("--synthetic and --model name two different checkpoints; pass one of them");
        int layers = result.GetValue(Layers);
        if (!SyntheticCheckpoint.Shapes.ContainsKey(shape))
            throw new UsageException($"--synthetic {shape} is not a known shape; known: {string.Join(", ", SyntheticCheckpoint.Shapes.Keys)}");
        if (layers <= 0) throw new UsageException("--layers must be positive");
        string folder = result.GetValue(Cache) ?? DefaultCache();
        using var line = new ProgressLine();
        return SyntheticCheckpoint.Ensure(folder, shape, layers, progress: new SynchronousProgress<double>(done =>
            line.Update($"writing the synthetic {shape} checkpoint ({layers} layers) to {folder} {ProgressLine.Bar(done)} {done:P0}", done >= 1)));
    }

    private static string DefaultCache()
    {
        string root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "spa", "synthetic");
    }
}
