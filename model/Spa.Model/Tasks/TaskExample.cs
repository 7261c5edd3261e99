namespace Spa.Model.Tasks;

/// <summary>
/// One example of a task: the model reads <see cref="Prompt"/> and should produce <see cref="Target"/> right after it.
/// Targets of the built-in tasks start with a space because the prompt ends in a label such as "Summary:".
/// </summary>
/// <param name="Id">Unique within its dataset: the data's own id where it has one, else the file name and line, "sciq_test_1000.jsonl:17".</param>
public sealed record TaskExample(string Id, string Prompt, string Target, TaskSplit Split);
