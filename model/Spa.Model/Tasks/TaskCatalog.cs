using System.Text;

namespace Spa.Model.Tasks;

/// <summary>
/// The tasks by name, each reading JSONL files into prompt/target examples in the plain "Label: text" style of the SPA
/// paper's LLaMA evaluation:
/// <list type="table">
/// <item><term>xsum</term><description><c>Document: {document}\nSummary:</c> then <c> {summary}</c></description></item>
/// <item><term>cnndm</term><description><c>Article: {article}\nHighlights:</c> then <c> {highlights}</c></description></item>
/// <item><term>coqa</term><description><c>Story: {story}\n</c>, one <c>Q: {q}\nA: {a}\n</c> per earlier turn, <c>Q: {question}\nA:</c> then <c> {answer}</c></description></item>
/// <item><term>sciq</term><description><c>Question: {question}\nAnswer:</c> then <c> {answer}</c></description></item>
/// <item><term>jsonl</term><description>the user's own data: <c>{"prompt", "completion"}</c> rows, or <c>{"text"}</c> rows for plain language modelling (empty prompt)</description></item>
/// </list>
/// Unknown fields are ignored.
/// </summary>
public static class TaskCatalog
{
    private static readonly SplitFractions TrainFile = new(0.9, 0.1);
    private static readonly SplitFractions TestFile = new(0, 0);

    private static readonly TaskDefinition[] Definitions =
    [
        new("xsum", [new("xsum/xsum_test_1000.jsonl", SplitFractions.Default)],
            row => new(row.GetId("idx"), $"Document: {row.GetString("document")}\nSummary:", " " + row.GetString("summary"))),
        new("cnndm", [new("cnndm/cnndm_test_250.jsonl", SplitFractions.Default)],
            row => new(row.GetId("id"), $"Article: {row.GetString("article")}\nHighlights:", " " + row.GetString("highlights"))),
        new("coqa", [new("coqa/coqa_dev_75turns.jsonl", SplitFractions.Default)], CoqaTurn),
        new("sciq", [new("sciq/sciq_train_11679.jsonl", TrainFile), new("sciq/sciq_test_1000.jsonl", TestFile)],
            row => new(null, $"Question: {row.GetString("question")}\nAnswer:", " " + row.GetString("answer"))),
        new("jsonl", [], UserRow),
    ];

    public static IReadOnlyList<string> Names { get; } = Definitions.Select(d => d.Name).ToArray();

    /// <summary>
    /// Reads task <paramref name="name"/> from <paramref name="dataFile"/> if given (its rows split 80/10/10), else from
    /// the task's own files under <paramref name="tasksRoot"/> (XSum, CNN/DM and CoQA split 80/10/10; SciQ's train
    /// file 90/10 into train and validation, its test file all test).
    /// </summary>
    /// <remarks>
    /// A row with an id of its own is split by that id; a row without one (SciQ, user data) by its full text, so
    /// that repeated rows never straddle train and test. CoQA turns are split one by one, not by story: the file
    /// holds only five stories, too few to split by. A later turn's history therefore may show an earlier turn's
    /// answer that sits in another split, as CoQA's gold-history setting always does.
    /// </remarks>
    public static TaskDataset Load(string name, string? dataFile, string? tasksRoot)
    {
        var task = Definitions.FirstOrDefault(d => d.Name == name)
            ?? throw new ArgumentException($"unknown task \"{name}\": expected one of {string.Join(", ", Names)}", nameof(name));
        TaskFile[] files = dataFile != null ? [new TaskFile(dataFile, SplitFractions.Default)]
            : task.DefaultFiles.Count == 0 ? throw new ArgumentException($"task {name} reads your own data: give a JSONL file", nameof(dataFile))
            : tasksRoot == null ? throw new ArgumentException($"task {name} needs the tasks folder or a data file", nameof(tasksRoot))
            : task.DefaultFiles.Select(f => f with { Path = Path.Combine(tasksRoot, f.Path) }).ToArray();

        var examples = new List<TaskExample>();
        var firstSeen = new Dictionary<string, int>();
        foreach (var file in files)
        {
            foreach (var row in JsonlRow.Read(file.Path))
            {
                var (ownId, prompt, target) = task.Format(row);
                var id = ownId ?? $"{Path.GetFileName(file.Path)}:{row.Line}";
                if (!firstSeen.TryAdd(id, row.Line)) throw row.Error($"id \"{id}\" repeats line {firstSeen[id]}");
                examples.Add(new TaskExample(id, prompt, target, file.Fractions.Assign(ownId ?? prompt + target)));
            }
        }
        if (examples.Count == 0) throw new InvalidDataException($"{string.Join(", ", files.Select(f => f.Path))}: no examples");
        return new TaskDataset(name, examples);
    }

    private static FormattedRow CoqaTurn(JsonlRow row)
    {
        var prompt = new StringBuilder($"Story: {row.GetString("story")}\n");
        foreach (var (question, answer) in row.GetStringPairs("history")) prompt.Append($"Q: {question}\nA: {answer}\n");
        prompt.Append($"Q: {row.GetString("question")}\nA:");
        return new($"{row.GetString("story_id")}#{row.GetId("turn_id")}", prompt.ToString(), " " + row.GetString("answer"));
    }

    private static FormattedRow UserRow(JsonlRow row) =>
        row.Has("prompt") || row.Has("completion") ? new(null, row.GetString("prompt"), row.GetString("completion"))
        : row.Has("text") ? new(null, "", row.GetString("text"))
        : throw row.Error("expected \"prompt\" and \"completion\", or \"text\"");
}
