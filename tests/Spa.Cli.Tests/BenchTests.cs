using System.Text.Json;

namespace Spa.Cli.Tests;

/// <summary><c>spa bench decode</c> writes its figures as JSON.</summary>
public sealed class BenchTests
{
    [Fact]
    public async Task DecodeBenchmarkWritesJson()
    {
        using var temp = new TempDir();
        var file = temp["bench.json"];

        var run = await Spa.RunAsync("bench", "decode", "--model", SharedData.Stories260K,
            "--tokens", "16", "--batches", "2", "--repeats", "1", "--json", file);

        Expect.Success(run);
        Assert.Equal("", run.Stdout);
        Expect.NoStackTrace(run);
        Assert.True(File.Exists(file), "no JSON written\n" + run);
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var root = json.RootElement;
        Assert.True(root.GetProperty("single_stream_tokens_per_s").GetDouble() > 0, "single stream rate\n" + root);
        var batched = root.GetProperty("batched").EnumerateArray().ToList();
        var only = Assert.Single(batched);
        Assert.Equal(2, only.GetProperty("batch").GetInt32());
        Assert.True(only.GetProperty("tokens_per_s").GetDouble() > 0, "batched rate\n" + root);
        Assert.Equal(16, root.GetProperty("tokens_per_sequence").GetInt32());
    }
}
