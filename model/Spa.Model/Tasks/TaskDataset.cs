namespace Spa.Model.Tasks;

/// <summary>The examples of one task, in file order, each tagged with its split.</summary>
public sealed class TaskDataset
{
    private readonly Dictionary<TaskSplit, IReadOnlyList<TaskExample>> _splits;

    public TaskDataset(string name, IReadOnlyList<TaskExample> examples)
    {
        Name = name;
        Examples = examples;
        _splits = Enum.GetValues<TaskSplit>().ToDictionary(split => split, split => (IReadOnlyList<TaskExample>)examples.Where(e => e.Split == split).ToList());
    }

    public string Name { get; }
    public IReadOnlyList<TaskExample> Examples { get; }

    public IReadOnlyList<TaskExample> Split(TaskSplit split) => _splits[split];
}
