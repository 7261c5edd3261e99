using System.CommandLine;
using Spa.CommandLine;
using Spa.Model.Checkpoints;

namespace Spa.Cli.Commands;

/// <summary><c>spa convert</c>: llama2.c checkpoint to the Hugging Face layout (q/k rows permuted for rotate-half RoPE).</summary>
public static class ConvertCommand
{
    public static Command Create()
    {
        var model = new ModelArguments();
        var output = new Option<string>("--out", "-o") { Description = "Directory to write config.json, safetensors and the tokenizer to.", Required = true };
        var shardSize = new Option<long?>("--shard-bytes") { Description = "Split the weights into safetensors shards of at most this many bytes (with an index file)." };
        var force = new Option<bool>("--force") { Description = "Replace the contents of a non-empty output directory." };
        var stored = new Option<string>("--dtype")
        {
            Description = "Type of the stored weights: float32, bfloat16 or float16. A model served in the type its file stores can be mapped instead of read.",
            DefaultValueFactory = _ => "float32",
        };

        var command = new Command("convert", "Convert a llama2.c checkpoint to the Hugging Face layout.");
        command.Options.Add(model.Model);
        command.Options.Add(output);
        command.Options.Add(shardSize);
        command.Options.Add(force);
        command.Options.Add(stored);
        command.SetGuardedAction((result, _) =>
        {
            var source = model.ResolvePath(result);
            var destination = result.GetValue(output)!;
            var shards = result.GetValue(shardSize);
            if (shards is <= 0) throw new UsageException($"--shard-bytes must be positive, got {shards}");
            var dtype = SafetensorsFile.Of(ModelArguments.ParseDType(result.GetValue(stored)!, stored.Name));
            HuggingFaceConverter.FromLlama2c(source, destination, shards, result.GetValue(force), dtype);
            Console.Error.WriteLine($"converted {source} to {destination}");
            return Task.FromResult(0);
        });
        return command;
    }
}
