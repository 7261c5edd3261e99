using Spa.CommandLine;
using Spa.Model.Checkpoints;
using System.CommandLine;
using Spa.Model;
using Spa.Model.Evaluation;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;
using Spa.Model.Training;

namespace Spa.Cli;

/// <summary>Options naming a task and its data, shared by train and eval; "personal" is a user corpus from `spa data personal`.</summary>
public sealed class TaskArguments
{
    public const string Personal = "personal";

    public Option<string> Task { get; } = new("--task")
    {
        Description = $"Task: {string.Join(", ", TaskCatalog.Names)} or {Personal} (a corpus written by `spa data personal`, given with --data).",
        Required = true,
    };

    public Option<string?> Data { get; } = new("--data") { Description = "The task's data file (JSONL). Default: the task's file under ../shared/data/tasks." };

    public Option<int> MaxTargetTokens { get; } = new("--max-target-tokens") { Description = "Longest target kept per example, in tokens.", DefaultValueFactory = _ => 48 };

    /// <summary>Only where a command evaluates: the personal task generated instead of teacher-forced.</summary>
    public Option<int?> FreeRunning { get; } = new("--free-running")
    {
        Description = "Personal task: cut each test story just before each private name and generate this many tokens greedily, counting M and bytes from real calls (instead of teacher forcing).",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Task);
        command.Options.Add(Data);
        command.Options.Add(MaxTargetTokens);
    }

    public string Name(ParseResult result) => result.GetValue(Task)!.Trim().ToLowerInvariant();

    public bool IsPersonal(ParseResult result) => Name(result) == Personal;

    public IReadOnlyList<PersonalStory> PersonalStories(ParseResult result) =>
        PersonalCorpus.Load(result.GetValue(Data) ?? throw new UsageException("--task personal needs --data FILE (a corpus written by `spa data personal`)"));

    public TaskDataset Dataset(ParseResult result)
    {
        var name = Name(result);
        if (!TaskCatalog.Names.Contains(name)) throw new UsageException($"unknown task '{name}': use one of {string.Join(", ", TaskCatalog.Names)}, {Personal}");
        return TaskCatalog.Load(name, result.GetValue(Data), ModelLocator.FindSharedData("tasks"));
    }

    /// <summary>
    /// Scores the base or a plugin in a mode on at most <paramref name="count"/> test examples: teacher-forced for the
    /// personal task (or generating from prompts cut before each name, with --free-running), by generation (with a
    /// progress line) for the others.
    /// </summary>
    public Func<PersonalPlugin?, CombinationMode, EvaluationSettings, EvaluationRow> TestEvaluator(ParseResult result, LlamaModel model, ITokenizer tokenizer,
        int count, CancellationToken cancellation)
    {
        if (IsPersonal(result))
        {
            var stories = Split(PersonalStories(result), TaskSplit.Test).Take(count).ToArray();
            if (result.GetValue(FreeRunning) is { } generate)
            {
                if (generate <= 0 || generate >= model.Config.MaxSeqLen) throw new UsageException($"--free-running must be in 1..{model.Config.MaxSeqLen - 1}, got {generate}");
                var names = new NameCompletionEvaluator(model, tokenizer);
                return (plugin, mode, settings) => names.Row(stories, plugin, mode, settings, generate, cancellation);
            }
            var personal = new PersonalEvaluator(model, tokenizer);
            return (plugin, mode, settings) => personal.Evaluate(stories, plugin, mode, settings, cancellation);
        }
        if (result.GetValue(FreeRunning) is not null) throw new UsageException("--free-running applies to the personal task");
        var dataset = Dataset(result);
        var examples = dataset.Split(TaskSplit.Test).Take(count).ToArray();
        var evaluator = new TaskEvaluator(model, tokenizer);
        return (plugin, mode, settings) =>
        {
            using var line = new ProgressLine();
            var label = $"{dataset.Name} {TaskEvaluator.ModeName(mode, settings)}{(plugin is null ? "" : " " + PluginNames.Name(plugin.Kind))}";
            return evaluator.Evaluate(dataset.Name, examples, plugin, mode, settings,
                new SynchronousProgress<int>(done => line.Update($"{label}: {done}/{examples.Length}")), cancellation);
        };
    }

    /// <summary>Personal stories split deterministically by their text, as task files without splits are.</summary>
    public static IReadOnlyList<PersonalStory> Split(IReadOnlyList<PersonalStory> stories, TaskSplit split) =>
        stories.Where(s => SplitFractions.Default.Assign(s.Text) == split).ToArray();

    /// <summary>
    /// Training and validation sequences of at most <paramref name="maxLength"/> tokens: BOS, prompt and target, the
    /// loss on the target only. Prompts are cut from the left to fit, so every sequence keeps its target.
    /// </summary>
    public (IReadOnlyList<TrainingSequence> Train, IReadOnlyList<TrainingSequence> Validation) TrainingData(ParseResult result, ITokenizer tokenizer, LlamaModel model, int? limit, int maxLength)
    {
        int context = Math.Min(model.Config.MaxSeqLen, maxLength);
        int maxTarget = result.GetValue(MaxTargetTokens);
        if (maxTarget <= 0 || maxTarget >= context) throw new UsageException($"--max-target-tokens must be in 1..{context - 1}, got {maxTarget}");
        if (IsPersonal(result)) return PersonalTrainingData(PersonalStories(result), tokenizer, context, limit);
        var dataset = Dataset(result);
        TrainingSequence FromExample(TaskExample e)
        {
            var (prompt, target) = TokenizedExample.Tokenize(tokenizer, e, context, maxTarget);
            return new TrainingSequence([.. prompt, .. target], prompt.Length);
        }
        return (Take(dataset.Split(TaskSplit.Train), limit).Select(FromExample).ToArray(), dataset.Split(TaskSplit.Validation).Take(200).Select(FromExample).ToArray());
    }

    /// <summary>
    /// Whole stories of at most <paramref name="context"/> tokens, the loss on every token after BOS, their private tokens
    /// marked as the ones quality is measured on.
    /// </summary>
    public static (IReadOnlyList<TrainingSequence> Train, IReadOnlyList<TrainingSequence> Validation) PersonalTrainingData(
        IReadOnlyList<PersonalStory> stories, ITokenizer tokenizer, int context, int? limit = null)
    {
        TrainingSequence FromStory(PersonalStory s)
        {
            var (tokens, isPrivate) = PersonalCorpus.PrivatePositions(tokenizer, s.Text, s.PrivateSpans);
            int length = Math.Min(tokens.Length + 1, context);
            int[] withEnd = [.. tokens, tokenizer.EosId];
            bool[] scored = [.. isPrivate, false];
            return new TrainingSequence(withEnd[..length], 1, scored[..length]);
        }
        return (Take(Split(stories, TaskSplit.Train), limit).Select(FromStory).ToArray(), Split(stories, TaskSplit.Validation).Select(FromStory).ToArray());
    }

    private static IEnumerable<T> Take<T>(IEnumerable<T> items, int? limit) => limit is { } n ? items.Take(n) : items;
}
