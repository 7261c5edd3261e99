using Spa.Edge;
using Spa.Grains.Abstractions;
using Spa.Model.Latency;
using Spa.Model.Plugins;

namespace Spa.LoadTest.Tests;

public sealed class FleetTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("spa-fleet-").FullName;

    [Fact]
    public void AYamlFleetStartsFromItsProfilesAndOverridesTheFiguresItGives()
    {
        var fleet = Fleet.Load(Write("fleet.yaml", """
            groups:
              - name: commuters
                share: 3
                profile: phone-4g
                jitter_ms: 10
                loss: 0.01
              - name: home
                profile: laptop-wifi
                rtt_ms: 25
                up_mbps: 40
            """));
        var (commuters, home) = (fleet.Groups[0], fleet.Groups[1]);
        Assert.Equal(("commuters", 3.0), (commuters.Name, commuters.Share));
        Assert.Equal(Profiles.Phone, commuters.Device);
        Assert.Equal(Profiles.Lte with { JitterMs = 10, Loss = 0.01 }, commuters.Link);
        Assert.Equal(Profiles.Wifi with { RoundTripMs = 25, UpMbps = 40 }, home.Link);
        Assert.Equal(new EdgeProfile("home", 8, 20e9, 25, 40, 300), home.Edge);
    }

    [Fact]
    public void AJsonFleetReadsTheSameAndRefusesUnknownFields()
    {
        var fleet = Fleet.Load(Write("fleet.json", """{ "groups": [ { "name": "a", "profile": "phone-5g", "cores": 4 } ] }"""));
        Assert.Equal(Profiles.Phone with { Cores = 4 }, fleet.Groups[0].Device);
        Assert.Equal(Profiles.FiveG, fleet.Groups[0].Link);
        var error = Assert.Throws<ArgumentException>(() => Fleet.Load(Write("typo.json", """{ "groups": [ { "rtt": 5 } ] }""")));
        Assert.Contains("rtt", error.Message);
    }

    [Theory]
    [InlineData("""{ "groups": [ { "loss": 1.5 } ] }""", "loss must be in [0, 1)")]
    [InlineData("""{ "groups": [ { "jitter_ms": 100 } ] }""", "jitter must be between 0 and the round-trip time")]
    [InlineData("""{ "groups": [ { "share": 0 } ] }""", "share must be positive")]
    [InlineData("""{ "groups": [ { "profile": "modem" } ] }""", "unknown profile 'modem'")]
    [InlineData("""{ "groups": [] }""", "has no groups")]
    [InlineData("""{ "groups": [ { "name": "x" }, { "name": "x" } ] }""", "group names must differ")]
    public void ABadFleetIsAClearError(string json, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => Fleet.Load(Write("bad.json", json)));
        Assert.Contains(message, error.Message);
        Assert.StartsWith("--fleet", error.Message);
    }

    [Fact]
    public void DevicesAreSharedOutInProportionAndInterleaved()
    {
        var fleet = Fleet.Load(Write("fleet.json", """{ "groups": [ { "name": "a", "share": 3 }, { "name": "b", "share": 1 } ] }"""));
        var devices = fleet.Assign(1000);
        Assert.Equal(750, devices.Count(g => g.Name == "a"));
        Assert.Equal(250, devices.Count(g => g.Name == "b"));
        // Any window of the first devices already holds both groups, near their shares.
        Assert.InRange(devices.Take(100).Count(g => g.Name == "b"), 24, 26);
        Assert.Equal([5, 5], Fleet.Of(["phone-4g", "laptop-wifi"]).Assign(10).GroupBy(g => g.Name).Select(g => g.Count()));
    }

    [Fact]
    public void JitterAndLossDrawsHaveTheMeanTheLatencyModelUses()
    {
        var link = Profiles.Lte with { JitterMs = 20, Loss = 0.1 };
        var profile = EdgeProfiles.Of(Profiles.Phone, link);
        var random = new Random(7);
        const int draws = 200_000;
        double sum = 0, least = double.MaxValue;
        for (int i = 0; i < draws; i++)
        {
            double ms = profile.DrawNetworkMs(1536, 256, random);
            sum += ms;
            least = Math.Min(least, ms);
        }
        var traffic = new PluginTraffic(PluginKind.Ladder, 1, 1536, 256, 0);
        double model = LatencyModel.Predict(0, 1, traffic, Profiles.Phone, link).NetworkMs;
        Assert.Equal(profile.NetworkMs(1536, 256) / 0.9, model, 9);
        Assert.InRange(sum / draws / model, 0.995, 1.005);
        Assert.True(least < profile.NetworkMs(1536, 256) - 15, "jitter moves round trips below the mean too");
    }

    private string Write(string name, string text)
    {
        var path = Path.Combine(_folder, name);
        File.WriteAllText(path, text);
        return path;
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
