using System.Globalization;
using System.Text.Json;
using Spa.Testing;
using Xunit.Abstractions;

namespace Spa.Cli.Tests;

/// <summary>
/// The method's promise for users it was not tuned on, as a new user meets it: <c>spa data personal --random-names</c>
/// draws the user's names, <c>spa train</c> with every default trains a parallel and a spa plugin (the spa plugin's tau
/// set on the user's own validation stories), and <c>spa eval</c> measures them teacher-forced and generating from
/// prompts cut before each name. Two users, drawn from fixed seeds.
/// </summary>
public sealed class DrawnUserTests(ITestOutputHelper output)
{
    private const int Stories = 150;

    [Theory]
    [InlineData(31)]
    [InlineData(32)]
    public async Task SpaKeepsParallelsQualityOnPrivateTokensForADrawnUserWithFewerRoundTrips(int seed)
    {
        using var temp = new TempDir();
        string corpus = temp["corpus.jsonl"], parallel = temp["parallel"], spa = temp["spa"];
        var data = await Spa.RunAsync(With("data", "personal", "--random-names", "3", "--seed", seed.ToString(CultureInfo.InvariantCulture),
            "--count", Stories.ToString(CultureInfo.InvariantCulture), "--out", corpus));
        Expect.Success(data);
        Assert.Contains("drew the private names", data.Stderr);
        foreach (var (mode, directory) in new[] { ("parallel", parallel), ("spa", spa) })
            Expect.Success(await Spa.RunAsync(With("train", "--task", "personal", "--data", corpus, "--mode", mode, "--out", directory), timeout: TimeSpan.FromMinutes(3)));

        var taught = await Rows("--modes", "base,parallel", "--plugin", parallel);
        var gated = await Rows("--modes", "spa", "--plugin", spa);
        var generated = await Rows("--modes", "spa", "--plugin", spa, "--free-running", "12");
        double baseAccuracy = Number(taught[0], "private_token_accuracy"), parallelAccuracy = Number(taught[1], "private_token_accuracy");
        double spaAccuracy = Number(gated[0], "private_token_accuracy");
        output.WriteLine($"seed {seed}: private-token accuracy base {baseAccuracy:F2}, parallel {parallelAccuracy:F2}, spa {spaAccuracy:F2} at M {Number(gated[0], "m"):F3}; " +
            $"free-running spa M {Number(generated[0], "m"):F3}");

        Assert.True(baseAccuracy < spaAccuracy, $"spa ({spaAccuracy:F2}) should beat the base ({baseAccuracy:F2}) on the user's names");
        Assert.True(spaAccuracy >= 0.97 * parallelAccuracy, $"spa ({spaAccuracy:F2}) should keep 97% of parallel's {parallelAccuracy:F2}");
        // Generating, the round trips are the calls that crossed the edge transport: each carries the taps up (6 x 64
        // fp32 values on stories260K) and out down, so bytes follow M exactly, and the gate both asks and keeps tokens.
        double m = Number(generated[0], "m");
        Assert.True(m > 0 && m < 1, $"the gate should ask the device for some tokens and not others: M = {m}");
        Assert.Equal(1536 * m, Number(generated[0], "bytes_up_per_token"), 6);
        Assert.Equal(256 * m, Number(generated[0], "bytes_down_per_token"), 6);

        async Task<List<JsonElement>> Rows(params string[] args)
        {
            var json = temp[$"rows-{Guid.NewGuid():N}.json"];
            Expect.Success(await Spa.RunAsync(With(["eval", "--task", "personal", "--data", corpus, "--limit", "100", "--json", json, .. args])));
            using var document = JsonDocument.Parse(File.ReadAllText(json));
            return document.RootElement.GetProperty("rows").EnumerateArray().Select(r => r.Clone()).ToList();
        }
    }

    private static string[] With(params string[] args) => [.. args, "--model", SharedData.Stories260K];

    private static double Number(JsonElement row, string field) => row.GetProperty(field).GetDouble();
}
