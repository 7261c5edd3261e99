using System.Diagnostics;
using Spa.Model.Sampling;
using Spa.Model.Tokenizers;

namespace Spa.Model.Generation;

/// <summary>Text in, text out: encodes the prompt, decodes or beam-searches, streams text and cuts at stop strings.</summary>
public sealed class TextGenerator(ITokenStepper stepper, ITokenizer tokenizer)
{
    private readonly Generator _generator = new(stepper);

    public LlamaModel Model => stepper.Model;
    public ITokenizer Tokenizer => tokenizer;

    /// <summary>The prompt's tokens as the model sees them: BOS, then the encoded text.</summary>
    public IReadOnlyList<int> EncodePrompt(string prompt)
    {
        var tokens = tokenizer.Encode(prompt, bos: true, eos: false);
        _generator.CheckPrompt(tokens);
        return tokens;
    }

    /// <summary>
    /// Generates up to <paramref name="maxTokens"/> tokens after the prompt. <paramref name="onText"/> receives the
    /// continuation as it becomes final (beam search delivers it at the end, in one piece).
    /// </summary>
    public GenerationResult Generate(string prompt, int maxTokens, SamplingOptions sampling, IReadOnlyList<string>? stopStrings = null,
        Action<string>? onText = null, CancellationToken cancellation = default) =>
        Generate(EncodePrompt(prompt), maxTokens, sampling, stopStrings, onText, cancellation);

    /// <summary>As above, from prompt tokens (BOS first) that the caller has already encoded and fitted to the context.</summary>
    public GenerationResult Generate(IReadOnlyList<int> promptTokens, int maxTokens, SamplingOptions sampling, IReadOnlyList<string>? stopStrings = null,
        Action<string>? onText = null, CancellationToken cancellation = default)
    {
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), $"max tokens must be positive, got {maxTokens}");
        sampling.Validate();
        _generator.CheckPrompt(promptTokens);
        var clock = Stopwatch.StartNew();
        TimeSpan firstToken = default;
        var decoder = tokenizer.CreateStreamDecoder();
        foreach (var id in promptTokens) decoder.Push(id); // the first generated piece decodes in the prompt's context
        var stops = new StopStrings(stopStrings ?? []);
        var text = new System.Text.StringBuilder();
        var tokens = new List<int>();
        double logProbability = 0;
        var finish = FinishReason.Length;

        void Emit(string piece)
        {
            if (piece.Length == 0) return;
            text.Append(piece);
            onText?.Invoke(piece);
        }

        IEnumerable<DecodedToken> decoded = sampling.BeamWidth > 1
            ? BeamTokens(promptTokens, maxTokens, sampling, cancellation)
            : _generator.Decode(promptTokens, maxTokens, sampling, cancellation);
        foreach (var token in decoded)
        {
            if (tokens.Count == 0) firstToken = clock.Elapsed;
            logProbability += token.LogProbability; // an end-of-sequence choice counts: it is part of the sequence's probability
            if (_generator.IsEndOfSequence(token.Id)) { finish = FinishReason.Stop; break; }
            tokens.Add(token.Id);
            Emit(stops.Push(decoder.Push(token.Id)));
            if (stops.Stopped) { finish = FinishReason.Stop; break; }
        }
        if (!stops.Stopped) Emit(stops.Push(decoder.Flush()) + stops.Flush());
        if (finish == FinishReason.Length && tokens.Count < maxTokens) finish = FinishReason.Context;
        return new GenerationResult(promptTokens, tokens, text.ToString(), finish, logProbability, firstToken, clock.Elapsed);
    }

    private IEnumerable<DecodedToken> BeamTokens(IReadOnlyList<int> prompt, int maxTokens, SamplingOptions sampling, CancellationToken cancellation)
    {
        var best = new BeamSearch(_generator).Run(prompt, maxTokens, sampling.BeamWidth, sampling.LengthPenalty, cancellation);
        // The hypothesis carries only its total log-probability; it is attributed to the first token.
        for (int i = 0; i < best.Tokens.Count; i++)
            yield return new DecodedToken(best.Tokens[i], i == 0 ? (float)best.LogProbability : 0f);
    }
}
