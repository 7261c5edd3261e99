namespace Spa.Model.Tasks;

/// <summary>
/// A task: where its data lives by default and how one JSONL row becomes a prompt and a target. Everything else
/// (ids, splits, validation) is the same for every task and lives in <see cref="TaskCatalog"/>.
/// </summary>
/// <param name="DefaultFiles">Relative to the tasks folder; empty for a task that only reads the user's own file.</param>
internal sealed record TaskDefinition(string Name, IReadOnlyList<TaskFile> DefaultFiles, Func<JsonlRow, FormattedRow> Format);

/// <summary>A data file and how its rows divide into splits.</summary>
internal sealed record TaskFile(string Path, SplitFractions Fractions);

/// <param name="Id">The row's own id, or null when the data has none.</param>
internal readonly record struct FormattedRow(string? Id, string Prompt, string Target);
