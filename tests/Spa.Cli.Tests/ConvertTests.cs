using System.Text.Json;
using Spa.Model.Checkpoints;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary><c>spa convert</c> to the Hugging Face layout, then generating from the converted directory.</summary>
public sealed class ConvertTests
{
    [Theory]
    [InlineData(null)]
    [InlineData(200_000L)]
    public async Task ConvertedModelGeneratesTheGreedyReferenceFromBos(long? shardBytes)
    {
        using var temp = new TempDir();
        var converted = temp["hf"];
        string[] convert = ["convert", "--model", SharedData.Stories260K, "--out", converted];
        if (shardBytes is long size) convert = [.. convert, "--shard-bytes", size.ToString(System.Globalization.CultureInfo.InvariantCulture)];

        var conversion = await Spa.RunAsync(convert);

        Expect.Success(conversion);
        Assert.Equal("", conversion.Stdout);
        Assert.Single(conversion.StderrLines);
        Assert.True(File.Exists(Path.Combine(converted, "config.json")), "no config.json\n" + conversion);
        var index = Path.Combine(converted, "model.safetensors.index.json");
        if (shardBytes is null)
        {
            Assert.True(File.Exists(Path.Combine(converted, "model.safetensors")), "no model.safetensors\n" + conversion);
            Assert.False(File.Exists(index));
        }
        else
        {
            Assert.True(File.Exists(index), "no model.safetensors.index.json\n" + conversion);
            using var json = JsonDocument.Parse(File.ReadAllText(index));
            var shards = json.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()!).Distinct().ToList();
            Assert.True(shards.Count > 1, $"expected several shards, got {shards.Count}");
            Assert.All(shards, shard => Assert.True(File.Exists(Path.Combine(converted, shard)), $"{shard} is missing"));
            Assert.False(File.Exists(Path.Combine(converted, "model.safetensors")));
        }

        var run = await Spa.RunAsync("generate", "--model", converted, "--max-tokens", "140", "--prompt", "");

        Expect.Success(run);
        // An empty prompt starts from BOS and echoes nothing, so stdout is exactly llama2.c's 140 greedy steps.
        Assert.Equal(SharedData.ExpectedGreedyFromBos.TrimEnd('\n'), run.Stdout.TrimEnd('\n'));
        Assert.StartsWith("140 tokens in ", Expect.GenerateSummary(run));
    }

    [Fact]
    public async Task ABFloat16ConversionServedFromItsMappedFileGeneratesWhatTheBFloat16ModelOfTheOriginalDoes()
    {
        using var temp = new TempDir();
        var converted = temp["hf-bf16"];

        Expect.Success(await Spa.RunAsync("convert", "--model", SharedData.Stories260K, "--out", converted, "--dtype", "bfloat16"));

        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(converted, "config.json"))))
            Assert.Equal("bfloat16", config.RootElement.GetProperty("torch_dtype").GetString());
        using (var weights = SafetensorsFile.Open(Path.Combine(converted, "model.safetensors")))
            Assert.All(weights.Entries.Values, e => Assert.Equal("BF16", e.Dtype));
        string[] generate = ["generate", "--max-tokens", "100", "--prompt", "", "--dtype", "bfloat16"];
        var original = await Spa.RunAsync([.. generate, "--model", SharedData.Stories260K]);
        var mapped = await Spa.RunAsync([.. generate, "--model", converted, "--map-weights", "true"]);
        Expect.Success(original);
        Expect.Success(mapped);
        Assert.Equal(original.Stdout, mapped.Stdout);
    }

    [Fact]
    public async Task ConvertRefusesAnUnknownDtype()
    {
        using var temp = new TempDir();

        var run = await Spa.RunAsync("convert", "--model", SharedData.Stories260K, "--out", temp["out"], "--dtype", "int8");

        Expect.OneLineError(run, "int8", exitCode: 2);
        Assert.False(Directory.Exists(temp["out"]));
    }

    [Fact]
    public async Task ConvertRefusesANonEmptyOutputWithoutForce()
    {
        using var temp = new TempDir();
        var output = temp["out"];
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "keep.txt"), "mine");

        var run = await Spa.RunAsync("convert", "--model", SharedData.Stories260K, "--out", output);

        Expect.OneLineError(run, "not empty");
        Assert.Equal("mine", File.ReadAllText(Path.Combine(output, "keep.txt")));
    }
}
