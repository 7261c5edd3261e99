namespace Spa.Model.Latency;

/// <summary>Dimensions of production-size bases, to project latency where the model itself cannot run.</summary>
public static class ModelDimensions
{
    /// <summary>
    /// LLaMA-7B (Touvron et al. 2023): 6.74e9 parameters with its untied output head. Rotate-half RoPE, as its
    /// Hugging Face checkpoints (the production layout) store it.
    /// </summary>
    public static LlamaConfig Llama7B { get; } = new(
        Dim: 4096,
        HiddenDim: 11008,
        Layers: 32,
        Heads: 32,
        KvHeads: 32,
        VocabSize: 32000,
        MaxSeqLen: 2048,
        TiedEmbedding: false,
        Rope: RopeStyle.RotateHalf);
}
