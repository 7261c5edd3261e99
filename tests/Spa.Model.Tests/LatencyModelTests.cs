using Spa.Model.Latency;
using Spa.Model.Plugins;

namespace Spa.Model.Tests;

public sealed class LatencyModelTests
{
    // stories260K's dimensions, written out so these tests need no checkpoint: kvDim = 4 heads * 8 = 32.
    private static readonly LlamaConfig Stories = new(
        Dim: 64, HiddenDim: 172, Layers: 5, Heads: 8, KvHeads: 4, VocabSize: 512, MaxSeqLen: 512, TiedEmbedding: true, Rope: RopeStyle.Interleaved);

    private static readonly PluginDimensions Ladder32x64 = new(SideDim: 32, AdapterDim: 64, LoraRank: 8, LoraAlpha: 16, AdapterBottleneck: 64, LstReduction: 8);

    // Side width 32 (d/2), adapter width 64 (d), LoRA rank 8 (alpha 16), adapter bottleneck 64, LST reduction 8.
    private static readonly PluginDimensions Conventional = PluginDimensions.Conventional(Stories);

    private const double Tolerance = 1e-9;

    // ---- dimensions ----

    [Fact]
    public void ConventionalDimensionsAreTheUsualProjectionSizes()
    {
        Assert.Equal(Ladder32x64, Conventional);
        Assert.Equal(new PluginDimensions(32, 4096, 8, 16, 64, 8), PluginDimensions.Conventional(ModelDimensions.Llama7B));
        // The side width is capped at half the model's.
        Assert.Equal(16, PluginDimensions.Conventional(Stories with { Dim = 32 }).SideDim);
        Assert.Equal((8, 21), (Conventional.LstDimFor(Stories), Conventional.LstHiddenDimFor(Stories)));
    }

    [Fact]
    public void DimensionsRejectSizesThatAreNotPositive()
    {
        Assert.Contains("SideDim", Assert.Throws<ArgumentException>(() => Ladder32x64 with { SideDim = 0 }).Message);
        Assert.Throws<ArgumentException>(() => new PluginDimensions(32, 0, 8, 16, 64));
        Assert.Throws<ArgumentException>(() => new PluginDimensions(32, 64, -1, 16, 64));
        Assert.Throws<ArgumentException>(() => new PluginDimensions(32, 64, 8, double.NaN, 64));
        Assert.Throws<ArgumentException>(() => new PluginDimensions(32, 64, 8, 16, 0));
        Assert.Throws<ArgumentException>(() => new PluginDimensions(32, 64, 8, 16, 64, LstReduction: 0));
        Assert.Contains("must divide", Assert.Throws<ArgumentException>(() => (Ladder32x64 with { LstReduction = 3 }).LstDimFor(Stories)).Message);
    }

    // ---- traffic ----

    [Theory]
    [InlineData(TapPlacement.Edge, ActivationType.Fp32, 6 * 64 * 4, 64 * 4)]
    [InlineData(TapPlacement.Edge, ActivationType.Fp16, 6 * 64 * 2, 64 * 2)]
    [InlineData(TapPlacement.Edge, ActivationType.Int8, 6 * (64 + 4), 64 + 4)]
    [InlineData(TapPlacement.Cloud, ActivationType.Fp32, 6 * 32 * 4, 64 * 4)]
    [InlineData(TapPlacement.Cloud, ActivationType.Fp16, 6 * 32 * 2, 64 * 2)]
    [InlineData(TapPlacement.Cloud, ActivationType.Int8, 6 * (32 + 4), 64 + 4)]
    public void LadderSendsLPlusOneTapsUpAndOutDown(TapPlacement placement, ActivationType activation, double up, double down)
    {
        var traffic = PluginTraffic.For(Stories, PluginKind.Ladder, Ladder32x64, placement, activation);
        Assert.Equal((1.0, up, down), (traffic.RoundTripsPerToken, traffic.BytesUp, traffic.BytesDown));
    }

    [Fact]
    public void LadderEdgeFlopsIncludeTheDownProjectionsOnlyWhenTheTapsArePlacedAtTheEdge()
    {
        // Multiply-adds: projections 6 * 64 * 32 = 12288, adapters 5 * 2 * 32 * 64 = 20480, W_out 32 * 64 = 2048.
        var edge = PluginTraffic.For(Stories, PluginKind.Ladder, Ladder32x64, TapPlacement.Edge, ActivationType.Fp32);
        var cloud = PluginTraffic.For(Stories, PluginKind.Ladder, Ladder32x64, TapPlacement.Cloud, ActivationType.Fp32);
        Assert.Equal(2.0 * (12288 + 20480 + 2048), edge.EdgeFlops);
        Assert.Equal(2.0 * (20480 + 2048), cloud.EdgeFlops);
    }

    [Fact]
    public void LadderAdapterWidthDefaultsToTheModelWidth()
    {
        var byDefault = PluginTraffic.For(ModelDimensions.Llama7B, PluginKind.Ladder, PluginDimensions.Conventional(ModelDimensions.Llama7B), TapPlacement.Cloud, ActivationType.Fp32);
        // 32 layers * 2 * d_s 32 * a 4096 + W_out 32 * 4096.
        Assert.Equal(2.0 * (32 * 2 * 32 * 4096 + 32 * 4096), byDefault.EdgeFlops);
    }

    [Fact]
    public void LoraCallsOncePerLayerSendingTheAttentionInputAndReceivingDeltaQAndDeltaV()
    {
        var fp32 = PluginTraffic.For(Stories, PluginKind.Lora, Conventional, TapPlacement.Edge, ActivationType.Fp32);
        Assert.Equal(Stories.Layers, fp32.RoundTripsPerToken);
        Assert.Equal(64 * 4, fp32.BytesUp);
        Assert.Equal((64 + 32) * 4, fp32.BytesDown);
        // Rank 8: q is 8 * (64 + 64), v is 8 * (64 + 32) multiply-adds.
        Assert.Equal(2.0 * (8 * 128 + 8 * 96), fp32.EdgeFlops);

        // Delta q and delta v travel joined, as one vector with one scale.
        var int8 = PluginTraffic.For(Stories, PluginKind.Lora, Conventional, TapPlacement.Edge, ActivationType.Int8);
        Assert.Equal(64 + 32 + 4, int8.BytesDown);
    }

    [Fact]
    public void AdapterCallsTwicePerLayer()
    {
        var traffic = PluginTraffic.For(Stories, PluginKind.Adapter, Conventional, TapPlacement.Edge, ActivationType.Fp16);
        Assert.Equal(2 * Stories.Layers, traffic.RoundTripsPerToken);
        Assert.Equal((128.0, 128.0), (traffic.BytesUp, traffic.BytesDown));
        Assert.Equal(2.0 * 2 * 64 * 64, traffic.EdgeFlops);
    }

    [Fact]
    public void LstRunsANarrowTransformerAndCatchesUpOnTheTokensTheGateSkipped()
    {
        // r = 8: width 8, MLP 172 / 8 = 21. Context 10.
        // Multiply-adds: ladders 6 * 64 * 8 = 3072; blocks 5 * (4 * 8^2 + 3 * 8 * 21 + 2 * 8 * 10) = 4600; U 8 * 64 = 512.
        var every = PluginTraffic.For(Stories, PluginKind.Lst, Conventional, TapPlacement.Edge, ActivationType.Fp32, contextTokens: 10);
        Assert.Equal((1.0, 6.0 * 64 * 4, 64.0 * 4), (every.RoundTripsPerToken, every.BytesUp, every.BytesDown));
        Assert.Equal(2.0 * (3072 + 4600 + 512), every.EdgeFlops);

        // Called for every second token: each round trip carries two tokens' taps and runs both through the blocks.
        var half = PluginTraffic.For(Stories, PluginKind.Lst, Conventional, TapPlacement.Edge, ActivationType.Fp32, contextTokens: 10, roundTripsPerToken: 0.5);
        Assert.Equal((0.5, 2 * 6.0 * 64 * 4, 64.0 * 4), (half.RoundTripsPerToken, half.BytesUp, half.BytesDown));
        Assert.Equal(2.0 * (2 * (3072 + 4600) + 512), half.EdgeFlops);

        var cloudTaps = PluginTraffic.For(Stories, PluginKind.Lst, Conventional, TapPlacement.Cloud, ActivationType.Fp32, contextTokens: 10);
        Assert.Equal(6.0 * 8 * 4, cloudTaps.BytesUp);
        Assert.Equal(2.0 * (4600 + 512), cloudTaps.EdgeFlops);
    }

    [Fact]
    public void TrafficRejectsMoreRoundTripsThanThePluginCanMake()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            PluginTraffic.For(Stories, PluginKind.Ladder, Ladder32x64, TapPlacement.Edge, ActivationType.Fp32, roundTripsPerToken: 1.5));
    }

    // ---- latency ----

    [Fact]
    public void PredictWithoutRoundTripsIsTheCloudTimeAlone()
    {
        var traffic = PluginTraffic.For(Stories, PluginKind.Ladder, Ladder32x64, TapPlacement.Edge, ActivationType.Fp32);
        var latency = LatencyModel.Predict(0.010, 0, traffic, Profiles.Phone, Profiles.Lte);
        Assert.Equal(new LatencyBreakdown(10, 0, 0, 10, 0), latency);
    }

    [Fact]
    public void PredictWorkedExampleLadderOnAPhoneOver4G()
    {
        // Ladder on stories260K, taps at the edge, fp32; measured cloud step 10 ms; phone (8 x 5 GFLOP/s); 4g.
        //   edge:    69632 FLOPs / 4e10 FLOP/s            = 0.0017408 ms
        //   up:      1536 B * 8 = 12288 bit / 10e6 bit/s  = 1.2288 ms
        //   down:    256 B * 8 = 2048 bit / 30e6 bit/s    = 0.068266... ms
        //   network: 60 + 1.2288 + 0.0682667              = 61.2970667 ms
        //   M = 1:    10 + 0.0017408 + 61.2970667         = 71.2988075 ms
        //   M = 0.25: 10 + 0.25 * 61.2988075              = 25.3247019 ms
        var traffic = PluginTraffic.For(Stories, PluginKind.Ladder, Ladder32x64, TapPlacement.Edge, ActivationType.Fp32);

        var parallel = LatencyModel.Predict(0.010, 1, traffic, Profiles.Phone, Profiles.Lte);
        Assert.Equal(10, parallel.CloudMs, Tolerance);
        Assert.Equal(0.0017408, parallel.EdgeMs, Tolerance);
        Assert.Equal(60 + 1.2288 + 2048.0 / 30e3, parallel.NetworkMs, Tolerance);
        Assert.Equal(71.2988075, parallel.TotalMs, 1e-6);

        var spa = LatencyModel.Predict(0.010, 0.25, traffic, Profiles.Phone, Profiles.Lte);
        Assert.Equal(0.25, spa.M);
        Assert.Equal(25.3247019, spa.TotalMs, 1e-6);
        Assert.Equal(spa.TotalMs, spa.CloudMs + spa.EdgeMs + spa.NetworkMs, Tolerance);
    }

    [Fact]
    public void PredictLoraOn7BPaysTheRoundTripTimeOncePerLayer()
    {
        var traffic = PluginTraffic.For(ModelDimensions.Llama7B, PluginKind.Lora, PluginDimensions.Conventional(ModelDimensions.Llama7B), TapPlacement.Edge, ActivationType.Fp16);
        var latency = LatencyModel.Predict(0, traffic.RoundTripsPerToken, traffic, Profiles.Laptop, Profiles.Wifi);
        // Per layer: 10 ms + 8192 B up at 100 Mbit/s (0.65536 ms) + 16384 B down at 300 Mbit/s (0.436907 ms).
        Assert.Equal(32 * (10 + 0.65536 + 16384 * 8 / 300e3), latency.NetworkMs, 1e-6);
        // 2 * 8 * (3 * 4096 + 4096) FLOPs on 8 x 20 GFLOP/s, 32 times.
        Assert.Equal(32 * 262144 / 160e9 * 1e3, latency.EdgeMs, Tolerance);
    }

    [Fact]
    public void CloudTimeOfBatchOneDecodingOn7BIsBoundByMemoryOnAnA100()
    {
        // Read per token: 6,738,415,616 - 131,072,000 (the untied input embedding, one row of which is read).
        const double read = 6_607_343_616;
        double seconds = LatencyModel.CloudSecondsPerToken(ModelDimensions.Llama7B, Profiles.A100, contextTokens: 0);
        Assert.Equal(read * 2 / 1.5e12, seconds, 1e-12);

        // Context 1024 adds keys and values: 2 * 32 layers * 4096 * 1024 values of 2 bytes.
        double withContext = LatencyModel.CloudSecondsPerToken(ModelDimensions.Llama7B, Profiles.A100, contextTokens: 1024);
        Assert.Equal((read + 2.0 * 32 * 4096 * 1024) * 2 / 1.5e12, withContext, 1e-12);

        // An accelerator with ample bandwidth is bound by the arithmetic: 2 FLOPs per read weight + 4 * L * d * context.
        var computeBound = new CloudProfile("slow", Flops: 1e12, MemoryBandwidthBytesPerS: 1e15);
        double flops = 2 * read + 4.0 * 32 * 4096 * 1024;
        Assert.Equal(flops / 1e12, LatencyModel.CloudSecondsPerToken(ModelDimensions.Llama7B, computeBound, 1024), 1e-12);
    }

    [Fact]
    public void PredictWithACloudProfileUsesTheAnalyticCloudTime()
    {
        var traffic = PluginTraffic.For(Stories, PluginKind.Ladder, Ladder32x64, TapPlacement.Edge, ActivationType.Fp32);
        var analytic = LatencyModel.Predict(ModelDimensions.Llama7B, Profiles.A100, 0, 0.25, traffic, Profiles.Phone, Profiles.Lte);
        double cloudSeconds = LatencyModel.CloudSecondsPerToken(ModelDimensions.Llama7B, Profiles.A100, 0);
        Assert.Equal(LatencyModel.Predict(cloudSeconds, 0.25, traffic, Profiles.Phone, Profiles.Lte), analytic);
    }

    // ---- parameters ----

    [Fact]
    public void BaseModelCostOf7BIs6Point74BillionParameters()
    {
        // 32000 * 4096 embedding + the same head + 32 * (4 * 4096^2 + 3 * 4096 * 11008 + 2 * 4096) + 4096.
        long expected = 2L * 32000 * 4096 + 32L * (4L * 4096 * 4096 + 3L * 4096 * 11008 + 2 * 4096) + 4096;
        var cost = LatencyModel.BaseModelCost(ModelDimensions.Llama7B);
        Assert.Equal(expected, cost.Parameters);
        Assert.InRange(cost.Parameters, 6.74e9 * 0.99, 6.74e9 * 1.01);
    }

    [Fact]
    public void BaseModelCostOfStories260KCountsGroupedKeysAndTheTiedEmbedding()
    {
        // 512 * 64 + 5 * (2 * 64^2 + 2 * 64 * 32 + 3 * 64 * 172 + 2 * 64) + 64 = 32768 + 5 * 45440 + 64.
        var cost = LatencyModel.BaseModelCost(Stories);
        Assert.Equal(260_032, cost.Parameters);
        Assert.Equal(cost.Parameters, cost.ParametersReadPerToken);
    }

    [Theory]
    // (L+1)(d d_s + d_s) + L(d_s a + a + a d_s + d_s) + d_s d + d = 6 * 2080 + 5 * 4192 + 2112.
    [InlineData(PluginKind.Ladder, 35_552)]
    // L * (r (d + d) + r (d + kvDim)) = 5 * (8 * 128 + 8 * 96).
    [InlineData(PluginKind.Lora, 8_960)]
    // 2L * (2 d m + m + d) = 10 * (2 * 64 * 64 + 64 + 64).
    [InlineData(PluginKind.Adapter, 83_200)]
    // Ladders 6 * 64 * 8 + 5 gates + 5 * (4 * 8^2 + 3 * 8 * 21 + 2 * 8) + final norm 8 + U 8 * 64.
    [InlineData(PluginKind.Lst, 3_072 + 5 + 3_880 + 8 + 512)]
    public void PluginParametersFollowFromTheDimensions(PluginKind kind, long expected) =>
        Assert.Equal(expected, PluginParameters.Count(Stories, kind, Ladder32x64));

    // ---- profiles ----

    [Fact]
    public void ProfilesAreFoundByNameIgnoringCase()
    {
        Assert.Same(Profiles.Phone, Profiles.Device("Phone"));
        Assert.Same(Profiles.Lte, Profiles.Link("4g"));
        Assert.Same(Profiles.Wifi, Profiles.Link(" WIFI "));
        Assert.Same(Profiles.A100, Profiles.Cloud("a100"));
    }

    [Fact]
    public void ProfilesUnknownNamesListTheKnownOnes()
    {
        Assert.Contains("phone, laptop", Assert.Throws<ArgumentException>(() => Profiles.Device("watch")).Message);
        Assert.Contains("4g, 5g, wifi", Assert.Throws<ArgumentException>(() => Profiles.Link("3g")).Message);
        Assert.Contains("a100, cpu", Assert.Throws<ArgumentException>(() => Profiles.Cloud("h100")).Message);
    }

    [Fact]
    public void ProfilesRejectImpossibleValues()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceProfile("none", 0, 1e9));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LinkProfile("none", 10, UpMbps: 0, DownMbps: 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LinkProfile("lossy", 10, 10, 10, Loss: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CloudProfile("none", 1e12, MemoryBandwidthBytesPerS: -1));
    }

    // ---- table ----

    [Fact]
    public void TableHasARowPerScenarioDeviceAndLinkAndPrintsAsMarkdown()
    {
        LatencyScenario[] scenarios =
        [
            new(PluginKind.Ladder, CombinationMode.Base),
            new(PluginKind.Ladder, CombinationMode.Spa, M: 0.25),
            new(PluginKind.Lora, CombinationMode.Parallel),
        ];
        var rows = LatencyTable.Build(Stories, Ladder32x64, TapPlacement.Edge, ActivationType.Fp32, contextTokens: 0, cloudSecondsPerToken: 0.010,
            scenarios, [Profiles.Phone, Profiles.Laptop], [Profiles.Lte]);

        Assert.Equal(6, rows.Count);
        var baseRow = rows[0];
        Assert.Equal((0.0, 10.0, 0.0), (baseRow.ParamsPercent, baseRow.Latency.TotalMs, baseRow.Latency.M));

        var spa = rows.Single(r => r.Mode == CombinationMode.Spa && r.Device == "phone");
        Assert.Equal(25.3247019, spa.Latency.TotalMs, 1e-6);
        // The ladder plus the gate (W_g 2 x 128 over n and the token, and its bias of 2) against stories260K's 260,032 parameters.
        Assert.Equal(100.0 * (35_552 + 258) / 260_032, spa.ParamsPercent, Tolerance);

        Assert.All(rows.Where(r => r.Kind == PluginKind.Lora), r => Assert.Equal(5, r.Latency.M));

        var markdown = LatencyTable.ToMarkdown(rows);
        Assert.StartsWith("| plugin | mode | device | link | params % | cloud ms | edge ms | network ms | total ms | M |", markdown);
        Assert.Contains("| - | base | phone | 4g | 0 | 10 | 0 | 0 | 10 | 0 |", markdown);
        Assert.Contains("| ladder | spa | phone | 4g | 13.771 | 10 | 0.000435 | 15.324 | 25.325 | 0.25 |", markdown);
    }

    [Fact]
    public void TableGatedModesNeedTheMeasuredM()
    {
        var error = Assert.Throws<ArgumentException>(() => LatencyTable.Build(Stories, Ladder32x64, TapPlacement.Edge, ActivationType.Fp32, 0, 0.010,
            [new LatencyScenario(PluginKind.Ladder, CombinationMode.Switch)], [Profiles.Phone], [Profiles.Lte]));
        Assert.Contains("measured M", error.Message);
    }
}
