using System.Diagnostics;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;

namespace Spa.Model.Tests;

public sealed class PersonalCorpusTests
{
    [Fact]
    public void PersonalCorpusExplore()
    {
        var tok = TokenizerLoader.Load(SharedData.Tok512, 512);
        var gen = new Spa.Model.Generation.TextGenerator(Stories260K.Model, tok);
        using var w = new StreamWriter("/tmp/pc-explore.txt");
        var clock = Stopwatch.StartNew();
        int withNames = 0; long tokens = 0, priv = 0;
        for (int i = 0; i < 60; i++)
        {
            var text = gen.Generate("", 200, new Spa.Model.Sampling.SamplingOptions { Temperature = 1, TopP = 0.9, Seed = (ulong)(1000 + i) }).Text;
            var names = PersonalCorpus.DetectNames(text);
            var story = PersonalCorpus.Personalise(text, ["Zorblax", "Quimby"]);
            if (story != null)
            {
                withNames++;
                var (t, p) = PersonalCorpus.PrivatePositions(tok, story.Text, story.PrivateSpans);
                tokens += t.Length - 1; priv += p.Count(x => x);
            }
            var caps = System.Text.RegularExpressions.Regex.Matches(text, @"\b[A-Z][a-z]+\b").Select(m => m.Value).Distinct();
            w.WriteLine($"=== {i} names=[{string.Join(",", names)}] caps=[{string.Join(",", caps)}]\n{text}\n--> {story?.Text}");
        }
        w.WriteLine($"withNames {withNames}/60 tokens {tokens} private {priv} ({100.0 * priv / tokens:F2}%) time {clock.Elapsed.TotalSeconds:F1}s");
    }
}
