using System.Text.RegularExpressions;
using Spa.Model.Checkpoints;
using Spa.Testing;

namespace Spa.Model.Tests;

/// <summary>The stories260K model, loaded once for the whole test run (it is read-only in every test).</summary>
public static class Stories260K
{
    private static readonly Lazy<LlamaModel> Loaded = new(() => LlamaModel.Load(SharedData.Stories260KBin, new ModelOptions()));

    public static LlamaModel Model => Loaded.Value;

    /// <summary>For each token id of stories260K's tokenizer, whether it begins a word.</summary>
    public static bool[] WordStarts => Tokenizers.WordStarts.Of(Tokenizers.TokenizerLoader.Load(SharedData.Tok512, 512));

    public static Checkpoint ReadCheckpoint() => Llama2cCheckpointReader.Read(SharedData.Stories260KBin);

    /// <summary>llama2.c's reference: the text of greedy decoding from BOS, 140 steps.</summary>
    public static string ExpectedGreedyText => File.ReadAllText(Path.Combine(SharedData.Stories260K, "expected_greedy_from_BOS_140steps.txt"));

    /// <summary>The first 8 logits and the top 5 (id, logit) after BOS at position 0, from an fp64 reference.</summary>
    public static (double[] First8, (int Id, double Logit)[] Top5) ExpectedLogitsAfterBos()
    {
        var lines = File.ReadAllLines(Path.Combine(SharedData.Stories260K, "expected_logits_pos0_BOS.txt"));
        var first8 = lines.Single(l => l.StartsWith("first8:"))["first8:".Length..]
            .Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(double.Parse).ToArray();
        var top5 = Regex.Matches(lines.Single(l => l.StartsWith("top5:")), @"(\d+):'.*?':(-?[0-9.]+)")
            .Select(m => (int.Parse(m.Groups[1].Value), double.Parse(m.Groups[2].Value)))
            .ToArray();
        return (first8, top5);
    }
}
