using Spa.Model.Tokenizers;

namespace Spa.Model.Tasks;

/// <summary>An example as token ids: the prompt (starting with BOS) and the target the model should produce after it.</summary>
public sealed record TokenizedExample(int[] PromptTokens, int[] TargetTokens)
{
    /// <summary>
    /// Tokenizes <paramref name="example"/> for a model with <paramref name="contextLength"/> positions.
    /// <list type="bullet">
    /// <item>Prompt and target are encoded together, as one text with BOS in front and EOS behind, so training sees
    /// exactly the tokens the text has; the prompt is the longest start of those tokens that the prompt alone also
    /// encodes to (a token spanning the boundary, which the built-in prompts never produce, goes to the target).</item>
    /// <item>The target keeps its first <paramref name="maxTargetTokens"/> tokens (losing EOS if it is longer).</item>
    /// <item>The prompt gets <c>contextLength - maxTargetTokens</c> positions whatever the target's real length, so
    /// the same example has the same prompt in training and in generation, and generation has room for
    /// <paramref name="maxTargetTokens"/> new tokens. A longer prompt keeps BOS and its last tokens: the start of
    /// the document goes, the instruction at the end ("\nSummary:", the question) stays.</item>
    /// </list>
    /// </summary>
    public static TokenizedExample Tokenize(ITokenizer tokenizer, TaskExample example, int contextLength, int maxTargetTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTargetTokens);
        // The prompt needs at least its BOS.
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(maxTargetTokens, contextLength);

        var prompt = tokenizer.Encode(example.Prompt, bos: true, eos: false);
        var whole = tokenizer.Encode(example.Prompt + example.Target, bos: true, eos: true);
        var boundary = 0;
        while (boundary < prompt.Count && boundary < whole.Count && prompt[boundary] == whole[boundary]) boundary++;

        var target = whole.Skip(boundary).Take(maxTargetTokens).ToArray();
        var budget = contextLength - maxTargetTokens;
        var kept = boundary <= budget
            ? whole.Take(boundary)
            : whole.Take(1).Concat(whole.Skip(boundary - (budget - 1)).Take(budget - 1));
        return new TokenizedExample(kept.ToArray(), target);
    }
}
