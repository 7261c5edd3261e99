using TorchSharp;

namespace Spa.Model;

/// <summary>Where and in what precision the model runs. Bound from configuration or command-line options.</summary>
public sealed record ModelOptions(string Device = "cpu", string DType = "float32", int Threads = 0)
{
    public torch.Device TorchDevice => new(Device);

    public torch.ScalarType ScalarType => DType.ToLowerInvariant() switch
    {
        "float32" or "fp32" or "f32" => torch.ScalarType.Float32,
        "bfloat16" or "bf16" => torch.ScalarType.BFloat16,
        "float16" or "fp16" or "f16" or "half" => torch.ScalarType.Float16,
        _ => throw new ArgumentException($"unknown dtype '{DType}': use float32, bfloat16 or float16"),
    };

    /// <summary>Checks the device exists and applies the thread setting; call once before building a model.</summary>
    public void Apply()
    {
        if (TorchDevice.type == DeviceType.CUDA && !torch.cuda.is_available())
            throw new ArgumentException($"device '{Device}' was asked for but CUDA is not available on this machine");
        _ = ScalarType;
        if (Threads > 0) torch.set_num_threads(Threads);
    }
}
