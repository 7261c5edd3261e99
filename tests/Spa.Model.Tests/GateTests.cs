using Spa.Model.Evaluation;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;
using Spa.Model.Training;
using Spa.Testing;
using static TorchSharp.torch;

namespace Spa.Model.Tests;

/// <summary>Drawn users, the gate's inputs and labels, and setting tau on held-out data.</summary>
public sealed class GateTests
{
    private static readonly Lazy<ITokenizer> Tok512 = new(() => TokenizerLoader.Load(SharedData.Tok512, 512));
    private static LlamaModel Model => Stories260K.Model;

    [Fact]
    public void DrawnNamesArePronounceableNewWordsOfSeveralTokensAndASeedAlwaysDrawsTheSame()
    {
        var users = Enumerable.Range(1, 40).Select(seed => RandomNames.Draw(3, seed, Tok512.Value)).ToArray();

        Assert.Equal(users[0], RandomNames.Draw(3, 1, Tok512.Value));
        Assert.True(users.Select(u => string.Join(",", u)).Distinct().Count() == users.Length, "every seed should draw another user");
        foreach (var name in users.SelectMany(u => u))
        {
            Assert.Matches("^[A-Z][a-z]{1,8}$", name);
            Assert.Matches("[aeiou]", name.ToLowerInvariant()[1..]);
            Assert.True(Tok512.Value.Encode(name, bos: false, eos: false).Count >= RandomNames.MinimumTokens, $"{name} is one token");
            Assert.DoesNotContain(name, RandomNames.DocumentedExamples);
            Assert.False(PersonalCorpus.IsKnownWord(name), $"{name} is a name the stories already use");
        }
        Assert.All(users, u => Assert.Equal(3, u.Distinct().Count()));
    }

    [Fact]
    public void AWordIsAPieceWithALeadingSpaceOrPunctuationAndThePiecesThatContinueIt()
    {
        var tokenizer = Tok512.Value;
        var starts = WordStarts.Of(tokenizer);
        var tokens = tokenizer.Encode("Kustein ran, and Kustein's dog barked.", bos: true, eos: false);
        var pieces = tokens.Select(tokenizer.TokenText).ToArray();

        Assert.True(starts[tokenizer.BosId]);
        foreach (var (token, piece) in tokens.Zip(pieces).Skip(1))
            Assert.Equal(piece.StartsWith(' ') || !char.IsLetterOrDigit(piece[0]), starts[token]);
        // stories260K's tokenizer spells the name as a lone space that starts the word and letters that continue it.
        int first = Array.IndexOf(pieces, "K");
        Assert.True(first > 1 && pieces[first - 1] == " " && starts[tokens[first - 1]], string.Join("|", pieces));
        Assert.All(tokens.Skip(first).Take(5), t => Assert.False(starts[t], $"{tokenizer.TokenText(t)} continues the name"));
        Assert.All(Enumerable.Range(3, 256), b => Assert.False(starts[b], $"byte token {tokenizer.TokenText(b)} continues a character"));
    }

    [Fact]
    public void WordLabelsMarkEveryCountedPositionOfAWordWhoseAnyPositionIsMarked()
    {
        var starts = new bool[8];
        starts[1] = starts[5] = true;                   // tokens 1 and 5 begin words; 2, 3, 4 continue them
        using var targets = tensor(new long[] { 1, 2, 3, 5, 2, 1, 4, 4 }, [2L, 4L]);
        using var labels = tensor(new float[] { 0, 0, 1, 0, 1, 0, 0, 0 }, [2L, 4L]);
        using var mask = tensor(new float[] { 1, 1, 1, 1, 1, 1, 1, 0 }, [2L, 4L]); // the last position is padding

        using var words = PluginLoss.WholeWords(labels, targets, mask, starts);

        // Row 0: words [1 2 3] (marked at 3) and [5]; row 1: [2] (a continuation opening the row), [1 4], padding.
        Assert.Equal([1f, 1f, 1f, 0f, 1f, 0f, 0f, 0f], words.data<float>().ToArray());
    }

    [Fact]
    public void TheGateReadsTheTokenOnlyWhenItSaysSoAndItsWeightsCrossToTheCloudIntact()
    {
        using var hidden = new Gate(Model.Config.Dim, GateInput.Hidden);
        using var both = new Gate(Model.Config.Dim, GateInput.HiddenAndToken);
        using var n = randn(3, Model.Config.Dim);
        using var token = randn(3, Model.Config.Dim);
        using var otherToken = randn(3, Model.Config.Dim);

        Assert.Equal(hidden.forward(n, token).data<float>().ToArray(), hidden.forward(n, otherToken).data<float>().ToArray());
        Assert.NotEqual(both.forward(n, token).data<float>().ToArray(), both.forward(n, otherToken).data<float>().ToArray());
        // The token is read after RMS normalisation: its scale does not matter.
        var scaled = both.forward(n, token * 7).data<float>().ToArray();
        Assert.All(both.forward(n, token).data<float>().ToArray().Zip(scaled), pair => Assert.Equal(pair.First, pair.Second, 1e-5));

        var weights = both.Weights();
        Assert.Equal(Gate.WeightCount(Model.Config.Dim, GateInput.HiddenAndToken), weights.Length);
        using var copy = Gate.FromWeights(weights, Model.Config.Dim, GateInput.HiddenAndToken, ScalarType.Float32, CPU);
        Assert.Equal(both.forward(n, token).data<float>().ToArray(), copy.forward(n, token).data<float>().ToArray());
        Assert.Throws<ArgumentException>(() => Gate.FromWeights(weights, Model.Config.Dim, GateInput.Hidden, ScalarType.Float32, CPU));
    }

    [Fact]
    public void TauForAQualityIsTheLargestThatKeepsItAndTauForABudgetTheSmallestThatFits()
    {
        // Six positions, four of them scored. The always-asking mode gets scored positions 0, 1 and 3 right, the base
        // only 3; the gate is surest about 0, then 4 (not scored), then 1.
        var data = new TeacherForcedPositions(
            sequence: [0, 0, 0, 0, 0, 0],
            target: [7, 7, 7, 7, 7, 7],
            basePrediction: [1, 1, 1, 7, 1, 7],
            pluginPrediction: [7, 7, 1, 7, 1, 7],
            probability: [0.9, 0.4, 0.1, 0.2, 0.7, 0.05],
            scored: [true, true, true, true, false, false]);

        var (keepAll, all) = TauCalibrator.ForQuality(data, 1.0);      // 0, 4 and 1 must go: tau between 0.4 and 0.2
        Assert.Equal(0.3, keepAll, 9);
        Assert.Equal(1.0, all.Quality, 9);
        Assert.Equal(3.0 / 6, all.M, 9);
        Assert.Equal(4, all.Positions);

        var (twoThirds, part) = TauCalibrator.ForQuality(data, 0.6);   // position 0 alone gives 2 of 3
        Assert.Equal(0.8, twoThirds, 9);
        Assert.Equal(2.0 / 3, part.Quality, 9);
        Assert.Equal(1.0 / 6, part.M, 9);

        var (budget, fitted) = TauCalibrator.ForBudget(data, 0.4);     // two positions of six fit under 0.4
        Assert.Equal(0.55, budget, 9);
        Assert.Equal(2.0 / 6, fitted.M, 9);
        Assert.Equal("m-budget", fitted.Target);

        var edge = data.Decide(() => new ThresholdPolicy(keepAll));
        Assert.Equal([true, true, false, false, true, false], edge);
        Assert.Equal(1.0, data.Score(edge).PrivateAccuracy / data.Score(Enumerable.Repeat(true, 6).ToArray()).PrivateAccuracy, 9);
    }

    [Fact]
    public void NamePromptsEndJustBeforeEachNameAndCarryItsTokens()
    {
        var story = PersonalCorpus.Personalise("Lily saw a cat. Then Lily and Tom ran home.", ["Zorblax", "Quimby"])!;
        var evaluator = new NameCompletionEvaluator(Model, Tok512.Value);

        var prompts = evaluator.Prompts([story], generate: 8);

        Assert.Equal(story.PrivateSpans.Count, prompts.Count);
        for (int i = 0; i < prompts.Count; i++)
        {
            var span = story.PrivateSpans[i];
            string before = Tok512.Value.Decode(prompts[i].Prompt), both = Tok512.Value.Decode([.. prompts[i].Prompt, .. prompts[i].Name]);
            Assert.Equal(story.Text[..span.Start].TrimEnd(), before.TrimEnd());
            Assert.Equal(story.Text[..span.End], both);
        }
        Assert.Single(evaluator.Prompts([story], generate: 8, limit: 1));
    }
}
