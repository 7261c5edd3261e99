using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Spa.Grains.Abstractions;

namespace Spa.Grains.Tests;

public sealed class LayoutTests
{
    [Theory]
    [InlineData(5, 1, "0-5")]
    [InlineData(5, 2, "0-2 2-5")]
    [InlineData(5, 5, "0-1 1-2 2-3 3-4 4-5")]
    [InlineData(32, 3, "0-10 10-21 21-32")]
    public void LayersSplitIntoContiguousRangesThatCoverTheModel(int layers, int shards, string expected)
    {
        var ranges = Enumerable.Range(0, shards).Select(k => ModelHost.LayerRange(layers, k, shards)).Select(r => $"{r.From}-{r.To}");
        Assert.Equal(expected, string.Join(' ', ranges));
    }

    [Fact]
    public void MoreShardsThanLayersIsRefused() =>
        Assert.Throws<ArgumentException>(() => ModelHost.LayerRange(5, 0, 6));

    [Fact]
    public void ShardKeysRoundTrip()
    {
        Assert.Equal(("org/model-7b", 1, 4), ShardKey.Parse(ShardKey.Format("org/model-7b", 1, 4)));
        foreach (var bad in new[] { "stories260K", "stories260K/shard-2-of-2", "/shard-0-of-1", "m/shard-0-of-0", "m/shard--1-of-2", "m/part-0-of-2" })
            Assert.Throws<ArgumentException>(() => ShardKey.Parse(bad));
    }

    [Fact]
    public void OptionsBindFromConfiguration()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Spa:Model:ModelPath"] = "models/stories260K/",
            ["Spa:Model:Shards"] = "2",
            ["Spa:Model:KvCacheBytesPerShard"] = "1048576",
            ["Spa:Model:DType"] = "bfloat16",
            ["Spa:Edge:TimeoutMs"] = "250",
        }).Build();
        using var services = new ServiceCollection().AddSpaModel(configuration).BuildServiceProvider();
        Assert.Equal(250, services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EdgeOptions>>().Value.TimeoutMs);
        var host = services.GetRequiredService<ModelHost>();
        Assert.Equal("stories260K", host.ModelName);
        Assert.Equal(2, host.Options.Shards);
        Assert.Equal("bfloat16", host.Options.DType);
        Assert.Equal(8, host.SlotsFor(128 * 1024));
        Assert.Equal(1, host.SlotsFor(4L * 1024 * 1024)); // always at least one slot
    }
}
