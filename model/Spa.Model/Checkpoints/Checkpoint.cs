using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>
/// A loaded checkpoint: its config and its CPU tensors named as in <see cref="WeightNames"/>, fp32 when read
/// (<see cref="CheckpointLayout.ReadAll"/>), in the stored type when mapped (<see cref="CheckpointLayout.Map"/>).
/// </summary>
public sealed class Checkpoint(LlamaConfig config, IReadOnlyDictionary<string, torch.Tensor> tensors, string source) : IDisposable
{
    public LlamaConfig Config { get; } = config;
    public IReadOnlyDictionary<string, torch.Tensor> Tensors { get; } = tensors;

    /// <summary>Where it was read from (a file or a directory), for messages.</summary>
    public string Source { get; } = source;

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
    }
}
