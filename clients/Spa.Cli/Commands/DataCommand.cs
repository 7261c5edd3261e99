using System.CommandLine;
using System.Diagnostics;
using Spa.CommandLine;
using Spa.Model.Tasks;

namespace Spa.Cli.Commands;

/// <summary><c>spa data</c>: makes the data sets the personalised models train and are evaluated on.</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var data = new Command("data", "Make training and evaluation data.");
        data.Subcommands.Add(Personal());
        return data;
    }

    private static Command Personal()
    {
        var model = new ModelArguments();
        var names = new Option<string?>("--names") { Description = "The user's private names, comma separated (e.g. Zorblax,Quimby); each a single word of letters." };
        var randomNames = new Option<int?>("--random-names") { Description = "Draw this many pronounceable private names from --seed instead of giving --names (a simulated user)." };
        var count = new Option<int>("--count") { Description = "Stories to write.", DefaultValueFactory = _ => 200 };
        var seed = new Option<int>("--seed") { Description = "Random seed: the same seed gives the same corpus.", DefaultValueFactory = _ => 1 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens per story.", DefaultValueFactory = _ => 200 };
        var output = new Option<string>("--out", "-o") { Description = "JSONL file to write: {\"text\", \"names\", \"base_names\", \"private_spans\"} per story.", Required = true };
        var force = new Option<bool>("--force") { Description = "Overwrite the output file if it exists." };

        var command = new Command("personal",
            "Write a user's corpus: stories sampled from the base model with the characters renamed to the user's private names, and where those names stand.");
        model.AddTo(command);
        command.Options.Add(names);
        command.Options.Add(randomNames);
        command.Options.Add(count);
        command.Options.Add(seed);
        command.Options.Add(maxTokens);
        command.Options.Add(output);
        command.Options.Add(force);
        command.SetGuardedAction((result, cancellation) =>
        {
            var given = result.GetValue(names);
            var drawn = result.GetValue(randomNames);
            if ((given is null) == (drawn is null)) throw new UsageException("give the user's private names with --names A,B,C or draw them with --random-names K");
            if (drawn is <= 0) throw new UsageException($"--random-names must be positive, got {drawn}");
            IReadOnlyList<string>? chosen = given is null ? null : ParseNames(given);
            int stories = result.GetValue(count);
            if (stories <= 0) throw new UsageException($"--count must be positive, got {stories}");
            int budget = result.GetValue(maxTokens);
            if (budget <= 0) throw new UsageException($"--max-tokens must be positive, got {budget}");
            var path = result.GetValue(output)!;
            // Refuse before sampling for minutes, not after.
            if (File.Exists(path) && !result.GetValue(force)) throw new UsageException($"{path} exists: pass --force to overwrite it");
            var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
            if (!Directory.Exists(directory)) throw new UsageException($"the directory of {path} does not exist");

            using var llama = model.LoadModel(result);
            var tokenizer = model.LoadTokenizer(result, llama);
            var privateNames = chosen ?? RandomNames.Draw(drawn!.Value, result.GetValue(seed), tokenizer);
            if (drawn is not null) Console.Error.WriteLine($"personal corpus: drew the private names {string.Join(", ", privateNames)} from seed {result.GetValue(seed)}");
            var clock = Stopwatch.StartNew();
            var corpus = PersonalCorpus.Generate(llama, tokenizer, privateNames, stories, result.GetValue(seed), budget,
                new ThrottledProgress(stories), cancellation);
            WriteAtomically(path, corpus);

            long tokens = 0, privateTokens = 0;
            foreach (var story in corpus)
            {
                var (ids, isPrivate) = PersonalCorpus.PrivatePositions(tokenizer, story.Text, story.PrivateSpans);
                tokens += ids.Length - 1; // BOS is never a target
                privateTokens += isPrivate.Count(p => p);
            }
            Console.Error.WriteLine(
                $"personal corpus: {corpus.Count} stories, {tokens} tokens, {privateTokens} private ({100.0 * privateTokens / tokens:F1}%), " +
                $"written to {path} in {clock.Elapsed.TotalSeconds:F1} s");
            return Task.FromResult(0);
        });
        return command;
    }

    private static string[] ParseNames(string value)
    {
        var parsed = value.Split(',', StringSplitOptions.TrimEntries);
        try
        {
            PersonalCorpus.CheckNames(parsed);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--names: {e.Message}");
        }
        return parsed;
    }

    /// <summary>Writes to FILE.tmp and renames it, so FILE is either absent or complete, never half written.</summary>
    private static void WriteAtomically(string path, IReadOnlyList<PersonalStory> corpus)
    {
        var temporary = path + ".tmp";
        try
        {
            using (var writer = new StreamWriter(temporary)) PersonalCorpus.Write(writer, corpus);
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Progress lines on stderr, at most two a second and always the last one.</summary>
    private sealed class ThrottledProgress(int total) : IProgress<int>
    {
        private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);
        private readonly Stopwatch _sinceLast = Stopwatch.StartNew();

        public void Report(int made)
        {
            if (made < total && _sinceLast.Elapsed < Interval) return;
            Console.Error.WriteLine($"personal corpus: {made}/{total} stories");
            _sinceLast.Restart();
        }
    }
}
