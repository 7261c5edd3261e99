using TorchSharp;

namespace Spa.Model.Checkpoints;

/// <summary>Checks and formatting shared by the checkpoint readers so their error messages read alike.</summary>
internal static class TensorChecks
{
    /// <summary>A NaN or infinite weight silently poisons every logit downstream, so loading stops at the source.</summary>
    public static void RequireFinite(torch.Tensor tensor, string name, string source)
    {
        using var finite = tensor.isfinite().all();
        if (!finite.item<bool>())
            throw new InvalidDataException($"{source}: tensor {name} contains non-finite values (NaN or infinity); the checkpoint is corrupted");
    }

    public static string Format(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
