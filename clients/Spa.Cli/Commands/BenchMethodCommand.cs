using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Spa.Cli.MethodStudy;
using Spa.CommandLine;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa bench method</c>: the method measured as the paper would defend it, on users drawn at random. For each of
/// --users seeds from --first-seed: draw three private names, write the user's corpus, train side, parallel, switch,
/// the spa gate variants, LoRA and adapters on its first --stories stories (each gated plugin's tau set on the user's own validation
/// stories), and measure them on the test stories, teacher-forced and generating from prompts cut before a name;
/// repeat parallel and spa for each --sizes. Prints the means over users with 95% intervals and writes them as JSON.
/// </summary>
public static class BenchMethodCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var users = new Option<int>("--users") { Description = "Drawn users to measure (at least 2 for an interval).", DefaultValueFactory = _ => 8 };
        var firstSeed = new Option<int>("--first-seed") { Description = "Seed of the first user; the others follow it. Choose defaults on one range of seeds and report on another.", DefaultValueFactory = _ => 201 };
        var stories = new Option<int>("--stories") { Description = "Stories each user trains and validates on.", DefaultValueFactory = _ => 300 };
        var sizes = new Option<int[]>("--sizes") { Description = "Stories per user for the data-size sweep (parallel and spa).", DefaultValueFactory = _ => [100, 300, 1000], AllowMultipleArgumentsPerToken = true };
        var epochs = new Option<int>("--epochs") { Description = "Training epochs of every plugin.", DefaultValueFactory = _ => 3 };
        var generate = new Option<int>("--generate") { Description = "Tokens generated from each free-running prompt.", DefaultValueFactory = _ => 12 };
        var prompts = new Option<int>("--prompts") { Description = "Free-running prompts per user, at most.", DefaultValueFactory = _ => 300 };
        var targetQuality = new Option<double>("--target-quality") { Description = "Share of parallel's quality each gated plugin's tau is set to on held-out stories.", DefaultValueFactory = _ => TrainCommand.DefaultTargetQuality };
        var mBudget = new Option<double>("--m-budget") { Description = "Round-trip budget the spa plugin's tau is also set to on held-out stories, for a second spa row.", DefaultValueFactory = _ => 0.25 };
        var work = new Option<string>("--work") { Description = "Directory for each user's corpus, plugins and figures; a run resumes from it.", Required = true };
        var json = new Option<string?>("--json") { Description = "Write the summary and every user's figures to this JSON file." };
        var markdown = new Option<string?>("--markdown") { Description = "Write the tables to this Markdown file." };
        var png = new Option<string?>("--png") { Description = "Plot the mean quality-versus-M curves here." };

        var command = new Command("method", "The SPA method on drawn users: Table 3, gate variants, free-running name completion and data size, as means with 95% intervals.");
        model.AddTo(command);
        foreach (var option in new Option[] { users, firstSeed, stories, sizes, epochs, generate, prompts, targetQuality, mBudget, work, json, markdown, png })
            command.Options.Add(option);
        command.SetGuardedAction((result, cancellation) =>
        {
            int count = result.GetValue(users);
            var sweep = (result.GetValue(sizes) ?? []).Distinct().Order().ToArray();
            var settings = new StudySettings(Path.GetFileName(Path.TrimEndingDirectorySeparator(model.ResolvePath(result))), result.GetValue(stories), sweep,
                result.GetValue(epochs), result.GetValue(generate), result.GetValue(prompts), result.GetValue(targetQuality),
                result.GetValue(mBudget), StudyPlugin.All.Select(p => p.Name).ToArray());
            if (count < 1) throw new UsageException($"--users must be positive, got {count}");
            if (settings.Stories < 20 || sweep.Any(s => s < 20)) throw new UsageException("--stories and every --sizes value must be at least 20 (a tenth of them validate)");
            if (settings.Epochs <= 0 || settings.Generate <= 0 || settings.Prompts <= 0) throw new UsageException("--epochs, --generate and --prompts must be positive");
            if (!(settings.TargetQuality is > 0 and <= 1)) throw new UsageException($"--target-quality must be in (0, 1], got {settings.TargetQuality}");
            if (!(settings.MBudget is >= 0 and <= 1)) throw new UsageException($"--m-budget must be in [0, 1], got {settings.MBudget}");
            var directory = result.GetValue(work)!;

            using var llama = model.LoadModel(result);
            var tokenizer = model.LoadTokenizer(result, llama);
            var clock = Stopwatch.StartNew();
            var figures = new List<UserFigures>();
            for (int u = 0; u < count; u++)
            {
                int seed = result.GetValue(firstSeed) + u;
                var label = $"user {u + 1}/{count} (seed {seed}): ";
                figures.Add(new UserStudy(llama, tokenizer, settings, Path.Combine(directory, $"seed-{seed}"), seed, label).Run(cancellation));
                Console.Error.WriteLine($"{label}done after {ProgressLine.Duration(clock.Elapsed)} in all");
            }

            var report = new StudyReport(settings, figures);
            var tables = report.Markdown();
            Console.Out.Write(tables);
            if (result.GetValue(markdown) is { } markdownPath) File.WriteAllText(markdownPath, tables);
            if (result.GetValue(json) is { } jsonPath) File.WriteAllText(jsonPath, JsonSerializer.Serialize(report.Json(), StudyJson.Options) + Environment.NewLine);
            if (result.GetValue(png) is { } pngPath) report.Plot(pngPath);
            return Task.FromResult(0);
        });
        return command;
    }
}
