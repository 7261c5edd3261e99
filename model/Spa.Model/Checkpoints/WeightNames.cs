namespace Spa.Model.Checkpoints;

/// <summary>
/// Tensor names of a LLaMA checkpoint in the Hugging Face layout. Every reader produces tensors under these names
/// (the llama2.c reader included), so the model is built from one naming scheme.
/// Shapes: embed [vocab, dim]; q [heads*headDim, dim]; k, v [kvHeads*headDim, dim]; o [dim, dim];
/// gate (w1) and up (w3) [hidden, dim]; down (w2) [dim, hidden]; norms [dim]; lm_head [vocab, dim].
/// </summary>
public static class WeightNames
{
    public const string Embedding = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";

    public static string AttentionNorm(int layer) => $"model.layers.{layer}.input_layernorm.weight";
    public static string Query(int layer) => $"model.layers.{layer}.self_attn.q_proj.weight";
    public static string Key(int layer) => $"model.layers.{layer}.self_attn.k_proj.weight";
    public static string Value(int layer) => $"model.layers.{layer}.self_attn.v_proj.weight";
    public static string Output(int layer) => $"model.layers.{layer}.self_attn.o_proj.weight";
    public static string MlpNorm(int layer) => $"model.layers.{layer}.post_attention_layernorm.weight";
    public static string Gate(int layer) => $"model.layers.{layer}.mlp.gate_proj.weight";
    public static string Up(int layer) => $"model.layers.{layer}.mlp.up_proj.weight";
    public static string Down(int layer) => $"model.layers.{layer}.mlp.down_proj.weight";

    /// <summary>The expected shape of every tensor the config implies, in checkpoint order.</summary>
    public static IEnumerable<(string Name, long[] Shape)> Expected(LlamaConfig c)
    {
        long kv = (long)c.KvHeads * c.HeadDim;
        yield return (Embedding, [c.VocabSize, c.Dim]);
        for (int l = 0; l < c.Layers; l++)
        {
            yield return (AttentionNorm(l), [c.Dim]);
            yield return (Query(l), [c.Dim, c.Dim]);
            yield return (Key(l), [kv, c.Dim]);
            yield return (Value(l), [kv, c.Dim]);
            yield return (Output(l), [c.Dim, c.Dim]);
            yield return (MlpNorm(l), [c.Dim]);
            yield return (Gate(l), [c.HiddenDim, c.Dim]);
            yield return (Up(l), [c.HiddenDim, c.Dim]);
            yield return (Down(l), [c.Dim, c.HiddenDim]);
        }
        yield return (FinalNorm, [c.Dim]);
        if (!c.TiedEmbedding) yield return (LmHead, [c.VocabSize, c.Dim]);
    }
}
