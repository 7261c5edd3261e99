using System.Security.Cryptography;
using System.Text;

namespace Spa.Model.Checkpoints;

/// <summary>
/// A content hash of a model's weights ("sha256:..."), recorded in every plugin trained on it so that a plugin is
/// never run on another base. It covers the config and every weight as float32, in <see cref="WeightNames.Expected"/>
/// order, whatever type the file stores them in. The q and k projections are left out: the two RoPE layouts permute
/// their rows without changing the function, so a llama2.c checkpoint and its Hugging Face conversion share one identity.
/// </summary>
public static class WeightIdentity
{
    /// <param name="appendFloat32">Appends the named weight's float32 bytes to the hash.</param>
    public static string Compute(LlamaConfig c, Action<string, IncrementalHash> appendFloat32)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{c.Dim} {c.HiddenDim} {c.Layers} {c.Heads} {c.KvHeads} {c.VocabSize} {c.TiedEmbedding}"));
        var rotated = Enumerable.Range(0, c.Layers).SelectMany(l => new[] { WeightNames.Query(l), WeightNames.Key(l) }).ToHashSet();
        foreach (var (name, _) in WeightNames.Expected(c))
        {
            if (rotated.Contains(name)) continue;
            hash.AppendData(Encoding.UTF8.GetBytes(name));
            appendFloat32(name, hash);
        }
        return "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The identity of a checkpoint held in memory.</summary>
    public static string Of(Checkpoint checkpoint) =>
        Compute(checkpoint.Config, (name, hash) => hash.AppendData(checkpoint.Tensors[name].bytes));
}
