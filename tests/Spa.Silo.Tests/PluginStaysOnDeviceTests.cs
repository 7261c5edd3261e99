using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Spa.Grains.Abstractions;
using Spa.Model.Checkpoints;
using Spa.Testing;
using StackExchange.Redis;

namespace Spa.Silo.Tests;

/// <summary>
/// The plugin's parameters never leave the device. A host with its state in a real Redis server serves a real
/// spa-device in parallel and spa modes; then the test inspects what the silo received from the device (the plugin
/// card: kind, base, gate weights, tau; the gate is the one part the design lets the cloud hold) and everything the
/// silo stored in Redis: no side-network parameter appears there in any form (raw bytes, base64, decimal text), and
/// neither does the device's secret, which is kept as a salted hash.
/// </summary>
public sealed class PluginStaysOnDeviceTests(RedisServer redis) : IClassFixture<RedisServer>, IDisposable
{
    private const string Secret = "stays-on-device-secret-0123456789";
    private readonly PluginCopy _copy = new();

    public void Dispose() => _copy.Dispose();

    [Fact]
    public async Task NoPluginParameterOrSecretReachesTheSilosStorage()
    {
        var (gate, parameters) = ReadPlugin(RandomPlugin.Ladder);
        var clusterId = "stays-" + Guid.NewGuid().ToString("N")[..8];
        await using var server = ServerFixture.With(("Spa__Cluster__Redis", redis.Endpoint), ("Spa__Cluster__ClusterId", clusterId), ("Spa__Cluster__ServiceId", clusterId));
        await server.InitializeAsync();
        using var client = server.Client();
        var id = await ConnectedDeviceTests.Register(client, "stays", Secret);
        _copy.Make();
        await using var device = SpaDevice.Start($"127.0.0.1:{server.GatewayPort}", id, Secret, _copy.Folder, 2, "--cluster-id", clusterId, "--service-id", clusterId);
        await device.WaitForOutputAsync(SpaDevice.ConnectedLine, TimeSpan.FromSeconds(60));
        _copy.Dispose();
        foreach (var mode in new[] { "parallel", "spa" })
        {
            var spa = (await PluginCompletionTests.Send(client, "/v1/completions",
                JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 24, spa = new { mode, device_id = id, fallback = "fail" } }),
                HttpStatusCode.OK)).GetProperty("spa");
            Assert.True(spa.GetProperty("transmissions").GetInt64() > 0);
        }

        // What the silo received about the plugin: the card and nothing more, its gate equal to the file's.
        var card = await server.App.Services.GetRequiredService<IGrainFactory>().GetGrain<IEdgeDeviceGrain>(id).GetPlugin();
        Assert.Equal(["Kind", "BaseIdentity", "GateWeights", "Tau", "GateReadsToken"], typeof(DevicePlugin).GetProperties().Select(p => p.Name));
        Assert.Equal(gate, card.GateWeights);

        // Everything the silo stored.
        await using var connection = await redis.ConnectAsync();
        var stored = await Everything(connection, clusterId);
        Assert.Contains(stored, s => s.Contains(id, StringComparison.Ordinal)); // the device's registration is there
        var leaks = new Fingerprints(stored);
        Assert.False(leaks.Contain(Encoding.UTF8.GetBytes(Secret)), "the device secret is stored");
        foreach (var (name, values) in parameters)
            Assert.False(leaks.Contain(values), $"{name} of the plugin is in the silo's storage");

        // The search finds a tensor that is there, in each form it looks for.
        var (anyName, sample) = parameters[0];
        var asJson = JsonSerializer.Serialize(new { weights = sample.Take(8) });
        var asBase64 = Convert.ToBase64String(Bytes(sample.Take(8).ToArray()));
        var asBinary = Encoding.Latin1.GetString(Bytes(sample.Take(8).ToArray()));
        foreach (var planted in new[] { asJson, asBase64, asBinary })
            Assert.True(new Fingerprints([.. stored, "{\"x\":" + JsonSerializer.Serialize(planted) + "}", planted]).Contain(sample), $"a planted copy of {anyName} was not found");
    }

    /// <summary>
    /// The gate's weights as a device hands them over (W_g, then its bias), and every other tensor of the plugin file
    /// with its fp32 values.
    /// </summary>
    private static (float[] Gate, List<(string Name, float[] Values)> Parameters) ReadPlugin(string directory)
    {
        using var file = SafetensorsFile.Open(Path.Combine(directory, "plugin.safetensors"));
        var gate = new Dictionary<string, float[]>();
        var parameters = new List<(string, float[])>();
        foreach (var name in file.Entries.Keys.Order(StringComparer.Ordinal))
        {
            using var tensor = file.Read(name);
            var values = tensor.to(TorchSharp.torch.ScalarType.Float32).data<float>().ToArray();
            if (name.StartsWith("gate.", StringComparison.Ordinal)) gate[name] = values;
            else parameters.Add((name, values));
        }
        Assert.True(gate.ContainsKey("gate.classifier.weight"), "the plugin has no gate");
        Assert.NotEmpty(parameters);
        return ([.. gate["gate.classifier.weight"], .. gate.GetValueOrDefault("gate.classifier.bias", [])], parameters);
    }

    /// <summary>Every key of the cluster's service and its value (strings, hash fields, list, set and sorted set members).</summary>
    private static async Task<List<string>> Everything(IConnectionMultiplexer connection, string serviceId)
    {
        var db = connection.GetDatabase();
        var server = connection.GetServers().Single();
        var stored = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: "*"))
        {
            stored.Add(key!);
            switch (await db.KeyTypeAsync(key))
            {
                case RedisType.String: stored.Add((string?)await db.StringGetAsync(key) ?? ""); break;
                case RedisType.Hash: stored.AddRange((await db.HashGetAllAsync(key)).SelectMany(e => new[] { (string)e.Name!, (string?)e.Value ?? "" })); break;
                case RedisType.List: stored.AddRange((await db.ListRangeAsync(key)).Select(v => (string?)v ?? "")); break;
                case RedisType.Set: stored.AddRange((await db.SetMembersAsync(key)).Select(v => (string?)v ?? "")); break;
                case RedisType.SortedSet: stored.AddRange((await db.SortedSetRangeByRankAsync(key)).Select(v => (string?)v ?? "")); break;
            }
        }
        Assert.Contains(stored, s => s.Contains(serviceId, StringComparison.Ordinal));
        return stored;
    }

    private static byte[] Bytes(float[] values) => [.. values.SelectMany(BitConverter.GetBytes)];

    /// <summary>
    /// Stored values searched for data: as text, as the bytes of the text, and as the bytes of every base64 run in it
    /// (binary state is kept as base64 in JSON); and the decimal numbers in the text.
    /// </summary>
    private sealed class Fingerprints
    {
        private readonly List<byte[]> _blobs = [];
        private readonly HashSet<float> _numbers = [];

        public Fingerprints(IEnumerable<string> stored)
        {
            foreach (var text in stored)
            {
                _blobs.Add(Encoding.Latin1.GetBytes(text));
                _blobs.Add(Encoding.UTF8.GetBytes(text));
                foreach (System.Text.RegularExpressions.Match run in System.Text.RegularExpressions.Regex.Matches(text, "[A-Za-z0-9+/]{8,}={0,2}"))
                    for (int skip = 0; skip < 4 && skip < run.Length; skip++)
                    {
                        var part = run.Value[skip..].TrimEnd('=');
                        part = part[..(part.Length / 4 * 4)];
                        if (part.Length > 0 && Convert.TryFromBase64String(part, new byte[part.Length], out int written))
                            _blobs.Add(Convert.FromBase64String(part)[..written]);
                    }
                foreach (System.Text.RegularExpressions.Match number in System.Text.RegularExpressions.Regex.Matches(text, @"-?\d+\.\d+(?:[eE][-+]?\d+)?"))
                    if (double.TryParse(number.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)) _numbers.Add((float)value);
            }
        }

        public bool Contain(byte[] needle) => _blobs.Any(b => b.AsSpan().IndexOf(needle) >= 0);

        /// <summary>Any run of four consecutive values as fp32 bytes, or two of them among the stored decimal numbers.</summary>
        public bool Contain(float[] values)
        {
            for (int at = 0; at + 4 <= values.Length; at += 4)
                if (Contain(Bytes(values[at..(at + 4)]))) return true;
            return values.Count(v => v != 0 && _numbers.Contains(v)) >= 2;
        }
    }
}
