using System.CommandLine;
using Spa.CommandLine;
using Spa.Model.Generation;
using Spa.Model.Sampling;

namespace Spa.Cli.Commands;

/// <summary><c>spa generate</c>: streams a completion to stdout and a one-line summary to stderr.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Text to continue (empty: start from BOS).", DefaultValueFactory = _ => "" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens to generate.", DefaultValueFactory = _ => 256 };
        var sampling = new SamplingArguments();
        var noEcho = new Option<bool>("--no-echo") { Description = "Print only the continuation, not the prompt before it." };

        var command = new Command("generate", "Generate text from a prompt with the base model.");
        model.AddTo(command);
        command.Options.Add(prompt);
        command.Options.Add(maxTokens);
        sampling.AddTo(command);
        command.Options.Add(noEcho);
        command.SetGuardedAction((result, cancellation) =>
        {
            int budget = result.GetValue(maxTokens);
            if (budget <= 0) throw new UsageException($"--max-tokens must be positive, got {budget}");
            var options = sampling.Options(result);
            options.Validate();
            using var llama = model.LoadModel(result);
            var generator = new TextGenerator(llama, model.LoadTokenizer(result, llama));
            var text = result.GetValue(prompt) ?? "";
            generator.EncodePrompt(text); // reject a prompt that does not fit before echoing it

            var stdout = Console.Out;
            if (!result.GetValue(noEcho))
            {
                stdout.Write(text);
                stdout.Flush();
            }
            var outcome = generator.Generate(text, budget, options, result.GetValue(sampling.Stop) ?? [], piece =>
            {
                stdout.Write(piece);
                stdout.Flush();
            }, cancellation);
            stdout.WriteLine();
            stdout.Flush();
            Console.Error.WriteLine(
                $"{outcome.Tokens.Count} tokens in {outcome.Elapsed.TotalSeconds:F3} s, {outcome.TokensPerSecond:F1} tokens/s, " +
                $"time to first token {outcome.TimeToFirstToken.TotalMilliseconds:F1} ms, prompt {outcome.PromptTokens.Count} tokens, finish {outcome.Finish.ToString().ToLowerInvariant()}");
            return Task.FromResult(0);
        });
        return command;
    }
}

/// <summary>Sampling options shared by the commands that generate.</summary>
public sealed class SamplingArguments
{
    public Option<double> Temperature { get; } = new("--temperature", "-t") { Description = "0 is greedy; higher is more random.", DefaultValueFactory = _ => 0.0 };
    public Option<int> TopK { get; } = new("--top-k") { Description = "Sample only among the k most likely tokens (0: off).", DefaultValueFactory = _ => 0 };
    public Option<double> TopP { get; } = new("--top-p") { Description = "Nucleus sampling: the smallest set of tokens whose probability reaches p.", DefaultValueFactory = _ => 1.0 };
    public Option<ulong> Seed { get; } = new("--seed", "-s") { Description = "Random seed: the same seed gives the same text.", DefaultValueFactory = _ => 42UL };
    public Option<double> RepetitionPenalty { get; } = new("--repetition-penalty") { Description = "Above 1 discourages tokens already present.", DefaultValueFactory = _ => 1.0 };
    public Option<string[]> Stop { get; } = new("--stop") { Description = "Stop when this text appears (repeatable); it is not printed.", AllowMultipleArgumentsPerToken = false };
    public Option<int> Beams { get; } = new("--beams") { Description = "Beam search width (1: no beam search).", DefaultValueFactory = _ => 1 };
    public Option<double> LengthPenalty { get; } = new("--length-penalty") { Description = "Beam scores are log-probability / length^penalty.", DefaultValueFactory = _ => 1.0 };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Temperature, TopK, TopP, Seed, RepetitionPenalty, Stop, Beams, LengthPenalty })
            command.Options.Add(option);
    }

    public SamplingOptions Options(ParseResult result) => new()
    {
        Temperature = result.GetValue(Temperature),
        TopK = result.GetValue(TopK),
        TopP = result.GetValue(TopP),
        Seed = result.GetValue(Seed),
        RepetitionPenalty = result.GetValue(RepetitionPenalty),
        BeamWidth = result.GetValue(Beams),
        LengthPenalty = result.GetValue(LengthPenalty),
    };
}
