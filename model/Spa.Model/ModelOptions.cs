using TorchSharp;

namespace Spa.Model;

/// <summary>
/// Where and in what precision the model runs. Bound from configuration or command-line options.
/// Threads: torch's intra-op threads; 0 picks one thread for small models (below <see cref="SmallModelParameters"/>),
/// whose operations are too small to split, so a second thread only adds synchronisation, and torch's default otherwise.
/// MapWeights: map the checkpoint file into memory instead of reading it (<see cref="MapsWeights"/>); null decides by size.
/// HugePages: ask for transparent huge pages for the weights read into memory and for KV caches (see <see cref="Model.HugePages"/>).
/// </summary>
public sealed record ModelOptions(string Device = "cpu", string DType = "float32", int Threads = 0, bool? MapWeights = null, bool HugePages = true)
{
    public const long SmallModelParameters = 50_000_000;

    public torch.Device TorchDevice => new(Device);

    public torch.ScalarType ScalarType => DType.ToLowerInvariant() switch
    {
        "float32" or "fp32" or "f32" => torch.ScalarType.Float32,
        "bfloat16" or "bf16" => torch.ScalarType.BFloat16,
        "float16" or "fp16" or "f16" or "half" => torch.ScalarType.Float16,
        _ => throw new ArgumentException($"unknown dtype '{DType}': use float32, bfloat16 or float16"),
    };

    /// <summary>
    /// Whether <see cref="LlamaModel.Load"/> maps the checkpoint (<see cref="Checkpoints.CheckpointLayout.Map"/>) where the
    /// file stores the serving dtype: on the CPU only, and unless set, for models of <see cref="SmallModelParameters"/>
    /// or more, whose load time and memory it saves. A small model loads in milliseconds either way, and its token is
    /// faster with q, k and v (gate and up) stacked into one weight, which mapped weights are not (<see cref="StackedProjection"/>).
    /// </summary>
    public bool MapsWeights(long parameterCount) =>
        TorchDevice.type == DeviceType.CPU && (MapWeights ?? parameterCount >= SmallModelParameters);

    /// <summary>Checks the device exists and applies the thread setting; call once before building a model.</summary>
    public void Apply(long parameterCount)
    {
        if (TorchDevice.type == DeviceType.CUDA && !torch.cuda.is_available())
            throw new ArgumentException($"device '{Device}' was asked for but CUDA is not available on this machine");
        _ = ScalarType;
        if (Threads < 0) throw new ArgumentException($"threads must be >= 0 (0: automatic), got {Threads}");
        if (Threads > 0) torch.set_num_threads(Threads);
        else if (parameterCount < SmallModelParameters) torch.set_num_threads(1);
    }
}
