using System.CommandLine;
using Spa.Model;
using Spa.Model.Checkpoints;
using Spa.Model.Tokenizers;

namespace Spa.CommandLine;

/// <summary>The options every command that loads a model shares, and where the model comes from when none is named.</summary>
public sealed class ModelArguments
{
    public const string ModelVariable = ModelLocator.ModelVariable;

    public Option<string?> Model { get; } = new("--model", "-m")
    {
        Description = $"Model checkpoint: a llama2.c .bin file, a directory holding one, or a Hugging Face directory (config.json + safetensors). Default: ${ModelVariable}, else ../shared/data/models/stories260K beside the repository.",
    };

    public Option<string> Device { get; } = new("--device")
    {
        Description = "Torch device: cpu, cuda or cuda:N.",
        DefaultValueFactory = _ => "cpu",
    };

    public Option<string> DType { get; } = new("--dtype")
    {
        Description = "Weights and activations: float32, bfloat16 or float16.",
        DefaultValueFactory = _ => "float32",
    };

    public Option<int> Threads { get; } = new("--threads")
    {
        Description = "Torch intra-op threads (0: torch's default).",
        DefaultValueFactory = _ => 0,
    };

    public Option<bool?> MapWeights { get; } = new("--map-weights")
    {
        Description = "Map the checkpoint file into memory instead of reading it (true or false). Only where the file stores the serving dtype, on the CPU. Default: for models of 50M parameters or more.",
    };

    public Option<bool> HugePages { get; } = new("--huge-pages")
    {
        Description = "Ask Linux for transparent huge pages for weights read into memory and for KV caches (true or false).",
        DefaultValueFactory = _ => true,
    };

    public Option<string?> Tokenizer { get; } = new("--tokenizer")
    {
        Description = "Tokenizer file (llama2.c tokenizer .bin or SentencePiece tokenizer.model). Default: the one beside the model.",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Tokenizer);
        command.Options.Add(Device);
        command.Options.Add(DType);
        command.Options.Add(Threads);
        command.Options.Add(MapWeights);
        command.Options.Add(HugePages);
    }

    public ModelOptions Options(ParseResult result) =>
        new(result.GetValue(Device)!, result.GetValue(DType)!, result.GetValue(Threads), result.GetValue(MapWeights), result.GetValue(HugePages));

    /// <summary>The torch type <paramref name="dtype"/> names; a usage error of <paramref name="option"/> when it names none.</summary>
    public static TorchSharp.torch.ScalarType ParseDType(string dtype, string option)
    {
        try
        {
            return new ModelOptions(DType: dtype).ScalarType;
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"{option}: {e.Message}");
        }
    }

    public LlamaModel LoadModel(ParseResult result) => LlamaModel.Load(ResolvePath(result), Options(result));

    /// <summary>The tokenizer named by --tokenizer, else the one stored beside the model.</summary>
    public ITokenizer LoadTokenizer(ParseResult result, LlamaModel model)
    {
        var modelPath = ResolvePath(result);
        var path = result.GetValue(Tokenizer) ?? CheckpointLoader.FindTokenizer(modelPath)
            ?? throw new UsageException($"no tokenizer found beside {modelPath}: pass --tokenizer PATH");
        return TokenizerLoader.Load(path, model.Config.VocabSize);
    }

    /// <summary>The model path: the option, else $SPA_MODEL, else stories260K in the shared data beside the repository.</summary>
    public string ResolvePath(ParseResult result) =>
        ModelLocator.Resolve(result.GetValue(Model))
        ?? throw new UsageException($"no model given and none found: pass --model PATH (a llama2.c .bin or a Hugging Face directory) or set ${ModelVariable}");
}

/// <summary>A mistake in how the command was called; reported as one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
