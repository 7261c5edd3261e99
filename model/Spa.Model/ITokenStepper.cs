namespace Spa.Model;

/// <summary>
/// One decoding step for a batch of sequences held in a <see cref="KvCache"/>: append new tokens, return the
/// next-token logits [B, vocab]. The base model is one; a base with a personal plugin in some combination mode is
/// another, so that greedy decoding, sampling and beam search serve every mode unchanged.
/// </summary>
public interface ITokenStepper
{
    LlamaModel Model { get; }

    TorchSharp.torch.Tensor Step(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens);
}
