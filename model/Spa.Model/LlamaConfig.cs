namespace Spa.Model;

/// <summary>How rotary position embeddings pair up the dimensions of a head.</summary>
public enum RopeStyle
{
    /// <summary>llama2.c and Meta's original code: rotate adjacent pairs (x0, x1), (x2, x3), ...</summary>
    Interleaved,

    /// <summary>Hugging Face: rotate the first half of the head against the second half.</summary>
    RotateHalf,
}

/// <summary>Dimensions of a LLaMA-family decoder; everything needed to build the network before loading weights.</summary>
public sealed record LlamaConfig(
    int Dim,
    int HiddenDim,
    int Layers,
    int Heads,
    int KvHeads,
    int VocabSize,
    int MaxSeqLen,
    bool TiedEmbedding,
    RopeStyle Rope,
    double RopeTheta = 10000.0,
    double NormEps = 1e-5,
    int BosId = 1,
    int EosId = 2)
{
    public int HeadDim => Dim / Heads;

    /// <summary>Throws <see cref="InvalidDataException"/> when the dimensions cannot describe a LLaMA model.</summary>
    public void Validate()
    {
        if (Dim <= 0 || HiddenDim <= 0 || Layers <= 0 || Heads <= 0 || KvHeads <= 0 || VocabSize <= 0 || MaxSeqLen <= 0)
            throw new InvalidDataException($"model dimensions must be positive: {this}");
        if (Dim % Heads != 0)
            throw new InvalidDataException($"dim {Dim} is not a multiple of the head count {Heads}");
        if (Heads % KvHeads != 0)
            throw new InvalidDataException($"head count {Heads} is not a multiple of the key/value head count {KvHeads}");
        if (HeadDim % 2 != 0)
            throw new InvalidDataException($"head dimension {HeadDim} must be even for rotary embeddings");
    }
}
