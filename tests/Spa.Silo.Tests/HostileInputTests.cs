using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Spa.Grains.Abstractions;
using Xunit.Abstractions;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// A bounded, reproducible fuzz of the HTTP API with malformed and adversarial requests: broken JSON and bytes, wrong
/// types and out-of-range values for every field, other users' devices, enormous bodies, header abuse, and weird
/// device ids. Whatever comes in, the server answers below 500, every 4xx carries <c>{"error": {"message": ...}}</c>,
/// and it stays healthy. The one exemption: a path Kestrel itself refuses as malformed HTTP (a NUL in it) gets
/// Kestrel's bare 400 before the application sees the request.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class HostileInputTests(ServerFixture server, ITestOutputHelper output)
{
    private const int Seed = 20261129;
    private const int Cases = 3000;

    /// <summary>One request: what is sent, and a short description to reproduce it by.</summary>
    private sealed record Case(int Index, string Kind, HttpMethod Method, string Path, byte[]? Body, string? ContentType,
        string[] Authorization, (string Name, string Value)? Header, bool MalformedPath)
    {
        public override string ToString()
        {
            var body = Body is null ? "(none)" : Body.Length > 240 ? $"{Preview(Body[..240])}... ({Body.Length} bytes)" : Preview(Body);
            return $"#{Index} {Kind}: {Method} {(Path.Length > 120 ? Path[..120] + "..." : Path)} content-type={ContentType ?? "(none)"} " +
                $"auth=[{string.Join(" | ", Authorization.Select(a => a.Length > 40 ? a[..40] + "..." : a))}] header={Header?.Name} body={body}";
        }

        private static string Preview(byte[] bytes) => System.Text.Unicode.Utf8.IsValid(bytes)
            ? JsonSerializer.Serialize(Encoding.UTF8.GetString(bytes), new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping })
            : "hex " + Convert.ToHexString(bytes);
    }

    [Fact]
    public async Task HostileRequestsGetNoServerErrorAndTheServerStaysHealthy()
    {
        output.WriteLine($"seed {Seed}, {Cases} cases");
        using var alice = server.Client();
        using var bob = server.Client(ServerFixture.OtherKey);
        var own = "fuzz-own-" + Guid.NewGuid().ToString("N")[..8];
        var others = "fuzz-bob-" + Guid.NewGuid().ToString("N")[..8];
        await PluginCompletionTests.Send(alice, "/v1/devices",
            JsonSerializer.Serialize(new { device_id = own, simulated = new { plugin_dir = RandomPlugin.Ladder, profile = "local" } }), HttpStatusCode.Created);
        await PluginCompletionTests.Send(bob, "/v1/devices", JsonSerializer.Serialize(new { device_id = others }), HttpStatusCode.Created);

        var fuzz = new Fuzz(new Random(Seed), own, others);
        using var client = server.Client(null);
        var counts = new SortedDictionary<int, int>();
        var kinds = new SortedDictionary<string, int>();
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < Cases; i++)
        {
            var c = fuzz.Next(i);
            var (status, problem) = await Run(client, c);
            counts[status] = counts.GetValueOrDefault(status) + 1;
            kinds[$"{c.Kind} {status}"] = kinds.GetValueOrDefault($"{c.Kind} {status}") + 1;
            if (problem is not null) failures.Add($"{problem}\n    {c}");
        }
        output.WriteLine($"{Cases} requests in {clock.Elapsed.TotalSeconds:F1} s");
        output.WriteLine("by status: " + string.Join(", ", counts.Select(p => $"{p.Key}: {p.Value}")));
        foreach (var (kind, n) in kinds) output.WriteLine($"  {kind}: {n}");
        foreach (var failure in failures.Take(20)) output.WriteLine("FAILED " + failure);

        using (var health = await client.GetAsync("/healthz")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        await PluginCompletionTests.Send(alice, "/v1/completions", """{"prompt": "Once upon a time", "max_tokens": 2}""", HttpStatusCode.OK);
        Assert.True(failures.Count == 0, $"seed {Seed}: {failures.Count} of {Cases} cases failed; the first:\n{string.Join("\n", failures.Take(5))}");
    }

    /// <summary>The causes of the 5xx and bare answers the fuzz found, each once by name.</summary>
    [Theory]
    [InlineData("/v1/completions", "{\"prompt\": \"\xFF\xFE\", \"max_tokens\": 1}", 400, "not valid UTF-8")]
    [InlineData("/v1/completions", "{\"prompt\": \"\\ud800\", \"max_tokens\": 1}", 400, "cannot be read")]
    [InlineData("/v1/devices", "{\"device_id\": \"\\udc00x\"}", 400, "cannot be read")]
    [InlineData("/v1/devices", "{\"device_id\": \"d\", \"simulated\": {\"plugin_dir\": \"\\ud800\"}}", 400, "cannot be read")]
    [InlineData("/v1/completions", null, 413, "at most 1048576 bytes")]
    public async Task FoundCasesAreRefusedWithAReason(string path, string? json, int status, string reason)
    {
        using var client = server.Client();
        // Latin-1 keeps the \xFF bytes above as single invalid bytes rather than encoding them as characters.
        var body = json is null ? Encoding.UTF8.GetBytes("{\"prompt\": \"a\"" + new string(' ', RequestBody.MaxBytes) + "}") : Encoding.Latin1.GetBytes(json);
        using var response = await client.PostAsync(path, new ByteArrayContent(body));
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Contains(reason, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("GET", "/v1/devices/", 405)]
    [InlineData("GET", "/v1/no-such-endpoint", 404)]
    [InlineData("GET", "/v1/devices/a%20b", 404)]
    public async Task PathRefusalsUseTheErrorShape(string method, string path, int status)
    {
        using var client = server.Client();
        using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.Equal(status, (int)response.StatusCode);
        Assert.NotEmpty(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString()!);
    }

    /// <summary>The status, and what is wrong with the response (null when nothing is).</summary>
    private static async Task<(int Status, string? Problem)> Run(HttpClient client, Case c)
    {
        using var request = new HttpRequestMessage(c.Method, c.Path);
        if (c.Body is not null)
        {
            request.Content = new ByteArrayContent(c.Body);
            if (c.ContentType is not null) request.Content.Headers.TryAddWithoutValidation("Content-Type", c.ContentType);
        }
        foreach (var value in c.Authorization) request.Headers.TryAddWithoutValidation("Authorization", value);
        if (c.Header is var (name, headerValue)) request.Headers.TryAddWithoutValidation(name, headerValue);
        HttpResponseMessage response;
        string body;
        try
        {
            response = await client.SendAsync(request);
            body = await response.Content.ReadAsStringAsync();
        }
        catch (HttpRequestException e)
        {
            return (0, $"no response: {e.Message}");
        }
        using (response)
        {
            int status = (int)response.StatusCode;
            if (status >= 500) return (status, $"status {status}: {body}");
            if (status < 400) return (status, null);
            if (status == 400 && c.MalformedPath && body.Length == 0) return (status, null);
            try
            {
                using var json = JsonDocument.Parse(body);
                var message = json.RootElement.GetProperty("error").GetProperty("message");
                return message.ValueKind == JsonValueKind.String && message.GetString()!.Length > 0
                    ? (status, null) : (status, $"status {status} with an empty error message: {body}");
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return (status, $"status {status} without an error object: {body}");
            }
        }
    }

    /// <summary>Builds the cases from one seeded generator, so a failing case is reproduced by the seed and its index.</summary>
    private sealed class Fuzz(Random random, string ownDevice, string othersDevice)
    {
        private static readonly string[] CompletionFields =
            ["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "repetition_penalty", "stop", "stream", "n"];
        private static readonly string[] SpaFields = ["mode", "device_id", "tau", "m_budget", "fallback"];
        private static readonly string[] Prompts = ["Once upon a time", "The", "A cat sat", "Ünïcödé ☃ 日本語 🐱", "\u0000\n\t", " "];

        /// <summary>Raw JSON values for any field: wrong types, out of range, beyond double, lone surrogates, ...</summary>
        private static readonly string[] Values =
        [
            "null", "true", "false", "0", "-0", "1", "-1", "2", "0.5", "1.5", "-1.5", "1e400", "-1e400", "1e-400", "1E+2", "0.0",
            "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616", "2147483648", "4294967296",
            "123456789012345678901234567890", "\"\"", "\"1\"", "\"abc\"", "\"NaN\"", "\"Infinity\"", "[]", "[1]", "[null]",
            "[\"a\", \"b\", \"c\", \"d\", \"e\"]", "[\"\"]", "{}", "{\"a\": 1}", "\"\\ud800\"", "\"\\udc00x\"", "\"\\u0000\"",
            "\"" + new string('x', 10_000) + "\"", "\"base\"", "\"spa\"", "\"parallel\"", "\"fail\"", "\"../../etc/passwd\"",
            new string('[', 40) + new string(']', 40),
        ];

        private static readonly string[] Modes = [.. SessionModes.All.Select(WireNames.Of), "", "BASE", "spa ", "nonsense", "lora\u0000"];

        private static readonly string[] ContentTypes =
            ["application/json", "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
             "multipart/form-data; boundary=x", "a/b; charset=ebcdic", ""];

        public Case Next(int index)
        {
            var roll = random.Next(100);
            var (kind, method, path, body, malformedPath) = roll switch
            {
                < 30 => ("completion-fields", HttpMethod.Post, "/v1/completions", Utf8(CompletionBody(mutations: 1 + random.Next(3))), false),
                < 48 => ("completion-spa", HttpMethod.Post, "/v1/completions", Utf8(SpaBody()), false),
                < 66 => ("broken-body", HttpMethod.Post, random.Next(4) == 0 ? "/v1/devices" : "/v1/completions", BrokenBody(), false),
                < 67 => ("enormous", HttpMethod.Post, random.Next(2) == 0 ? "/v1/devices" : "/v1/completions", Enormous(), false),
                < 82 => ("device-register", HttpMethod.Post, "/v1/devices", Utf8(DeviceBody()), false),
                _ => DeviceGet(),
            };
            // Most requests authenticate as alice, so that the body is what gets tested; the rest abuse the header.
            string[] authorization = random.Next(10) < 7 ? [$"Bearer {ServerFixture.Key}"] : Pick<string[]>(
            [
                [], ["Bearer"], ["Bearer "], ["Bearer wrong-key"], ["Basic dXNlcjpwYXNz"], [ServerFixture.Key], ["bearer " + ServerFixture.Key],
                [$"Bearer {ServerFixture.OtherKey}"], [$"Bearer {ServerFixture.Key}", "Bearer wrong-key"], [$"Bearer {ServerFixture.Key}", $"Bearer {ServerFixture.Key}"],
                ["Bearer " + new string('k', 16_000)], ["Bearer " + ServerFixture.Key + "\t"],
            ]);
            (string, string)? header = random.Next(10) == 0
                ? Pick<(string, string)>([("X-Garbage", new string('g', 12_000)), ("Accept", "*/*;q=nonsense"), ("Cookie", "a=" + new string('c', 4000)), ("Expect", "100-continue"), ("X-Forwarded-For", "999.999.999.999")])
                : null;
            return new Case(index, kind, method, path, method == HttpMethod.Get ? null : body, method == HttpMethod.Get ? null : Pick(ContentTypes),
                authorization, header, malformedPath);
        }

        // Raw UTF-8 rather than \u escapes for non-ASCII text, so that the server's own decoding is what gets tested.
        private static readonly JsonSerializerOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

        private static string Str(string text) => JsonSerializer.Serialize(text, Relaxed);

        private T Pick<T>(IReadOnlyList<T> items) => items[random.Next(items.Count)];

        private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

        private static string Json(IEnumerable<(string Name, string Value)> fields) =>
            "{" + string.Join(", ", fields.Select(f => $"{Str(f.Name)}: {f.Value}")) + "}";

        /// <summary>A request that would be valid and cheap (1 or 2 tokens), with some fields given hostile values.</summary>
        private string CompletionBody(int mutations)
        {
            var fields = new Dictionary<string, string>
            {
                ["prompt"] = Str(Pick(Prompts)),
                ["max_tokens"] = random.Next(1, 3).ToString(),
            };
            if (random.Next(3) == 0) fields["stream"] = "true";
            for (int i = 0; i < mutations; i++)
            {
                var name = random.Next(12) == 0 ? "unknown_" + random.Next(1000) : Pick(CompletionFields);
                fields[name] = random.Next(3) == 0 ? Number(name) : Pick(Values);
            }
            // Only max_tokens of 1 or 2 generates cheaply: a request that could be valid never asks for more.
            if (fields.TryGetValue("max_tokens", out var m) && long.TryParse(m, out var n) && n > 2) fields["max_tokens"] = "2";
            if (!fields.ContainsKey("max_tokens") || fields["max_tokens"] == "null") fields["max_tokens"] = "1";
            return Json(fields.Select(p => (p.Key, p.Value)));
        }

        /// <summary>A number around the field's range, so that bounds are probed on both sides.</summary>
        private string Number(string name) => name switch
        {
            "temperature" => (random.NextDouble() * 4 - 1).ToString("R"),
            "top_p" or "tau" or "m_budget" => (random.NextDouble() * 2.2 - 0.6).ToString("R"),
            "top_k" => random.Next(-5, 600).ToString(),
            "repetition_penalty" => (random.NextDouble() * 4 - 1).ToString("R"),
            "seed" => random.NextInt64(long.MinValue, long.MaxValue).ToString(),
            "n" => random.Next(-2, 4).ToString(),
            _ => random.Next(-3, 4).ToString(),
        };

        private string SpaBody()
        {
            if (random.Next(3) == 0) return WellFormedSpaBody();
            var spa = new Dictionary<string, string>();
            if (random.Next(5) > 0) spa["mode"] = Str(Pick(Modes));
            if (random.Next(5) > 0) spa["device_id"] = Str(DeviceId());
            foreach (var name in new[] { "tau", "m_budget", "fallback" })
                if (random.Next(3) == 0) spa[name] = name == "fallback" && random.Next(2) == 0 ? Str(Pick(new[] { "base", "fail" })) : random.Next(2) == 0 ? Number(name) : Pick(Values);
            if (random.Next(10) == 0) spa[Pick(SpaFields) + "_x"] = "1";
            if (random.Next(10) == 0) spa[Pick(SpaFields)] = Pick(Values);
            var spaJson = random.Next(15) == 0 ? Pick(Values) : Json(spa.Select(p => (p.Key, p.Value)));
            var body = CompletionBody(mutations: random.Next(4) == 0 ? 1 : 0);
            return body[..^1] + ", \"spa\": " + spaJson + "}";
        }

        /// <summary>A plugin request of the right shape, so that every mode meets the own, another's and unknown devices.</summary>
        private string WellFormedSpaBody()
        {
            var mode = Pick(SessionModes.All.Where(m => m != SessionMode.Base).ToArray());
            var spa = new Dictionary<string, string> { ["mode"] = Str(WireNames.Of(mode)), ["device_id"] = Str(DeviceId()), ["fallback"] = Str(Pick(new[] { "base", "fail" })) };
            if (mode.IsGated() && random.Next(2) == 0) spa[random.Next(2) == 0 ? "tau" : "m_budget"] = random.NextDouble().ToString("R");
            return CompletionBody(mutations: 0)[..^1] + ", \"spa\": " + Json(spa.Select(p => (p.Key, p.Value))) + "}";
        }

        /// <summary>The own device, another user's, unknown ones, and ids no device can have.</summary>
        private string DeviceId() => random.Next(8) switch
        {
            0 or 1 => ownDevice,
            2 or 3 => othersDevice,
            4 => "nobody-" + random.Next(100_000),
            _ => Pick(new[] { "", " ", "../../etc/passwd", "..", "%2e%2e%2f", "телефон", "📱", "a\u0000b", new string('d', 65), new string('d', 5000), "a/b", "a b", "CON", "null" }),
        };

        private string DeviceBody()
        {
            var fields = new Dictionary<string, string>();
            // Never the own device: re-registering it (allowed to its owner) would change what the other cases test.
            if (random.Next(6) > 0)
                fields["device_id"] = random.Next(3) == 0 ? Pick(Values) : Str(random.Next(3) switch
                {
                    0 => othersDevice,
                    1 => "fuzz-new-" + random.Next(1_000_000),
                    _ => Pick(new[] { "", "../x", "телефон", new string('d', 65), "a\u0000b", "a b", ".", "-" }),
                });
            if (random.Next(3) == 0)
                fields["secret"] = random.Next(2) == 0 ? Pick(Values) : Str(new string('s', random.Next(0, 40)));
            if (random.Next(2) == 0)
            {
                var simulated = new Dictionary<string, string>();
                if (random.Next(4) > 0) simulated["plugin_dir"] = random.Next(2) == 0 ? Pick(Values) : Str(Pick(new[] { "/nonexistent/plugin", "/etc", "../../..", "", "/dev/null", "/proc/self" }));
                if (random.Next(2) == 0)
                    simulated["profile"] = random.Next(3) switch
                    {
                        0 => Str(Pick(new[] { "phone-4g", "local", "pigeon-post", "" })),
                        1 => Json(new[] { "cores", "flops_per_core", "rtt_ms", "up_mbps", "down_mbps", "name" }
                            .Where(_ => random.Next(2) == 0).Select(n => (n, random.Next(2) == 0 ? Pick(Values) : Number(n)))),
                        _ => Pick(Values),
                    };
                if (random.Next(8) == 0) simulated["extra"] = "1";
                fields["simulated"] = random.Next(8) == 0 ? Pick(Values) : Json(simulated.Select(p => (p.Key, p.Value)));
            }
            if (random.Next(8) == 0) fields["unknown_" + random.Next(100)] = Pick(Values);
            return Json(fields.Select(p => (p.Key, p.Value)));
        }

        /// <summary>Bytes that are not a well-formed request: truncated, corrupted, not UTF-8, not JSON, too deep.</summary>
        private byte[] BrokenBody()
        {
            var valid = Utf8(random.Next(2) == 0 ? CompletionBody(0) : SpaBody());
            switch (random.Next(10))
            {
                case 0: return valid[..random.Next(valid.Length)];
                case 1:
                {
                    var corrupt = (byte[])valid.Clone();
                    for (int i = 0, n = 1 + random.Next(4); i < n; i++) corrupt[random.Next(corrupt.Length)] = (byte)random.Next(256);
                    return corrupt;
                }
                case 2:
                {
                    // Invalid UTF-8 inside the prompt string: a stray continuation, an overlong NUL, an encoded surrogate, a cut sequence.
                    var bad = Pick(new byte[][] { [0xFF], [0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xE2, 0x82], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xF4, 0x90, 0x80, 0x80] });
                    var text = Encoding.UTF8.GetString(valid);
                    int at = text.IndexOf("\"prompt\": \"", StringComparison.Ordinal) + 11;
                    return [.. valid[..Encoding.UTF8.GetByteCount(text[..at])], .. bad, .. valid[Encoding.UTF8.GetByteCount(text[..at])..]];
                }
                case 3:
                {
                    var bytes = new byte[random.Next(0, 300)];
                    random.NextBytes(bytes);
                    return bytes;
                }
                case 4:
                {
                    int depth = Pick(new[] { 63, 64, 65, 1000, 100_000 });
                    return Utf8(random.Next(2) == 0 ? new string('[', depth) + new string(']', depth) : string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth));
                }
                case 5: return Utf8(Pick(new[] { "", " ", "null", "[]", "1", "\"prompt\"", "true", "NaN", "Infinity", "-Infinity", "{\"prompt\": NaN}", "{\"max_tokens\": Infinity, \"prompt\": \"a\"}", "{\"prompt\": 'single'}", "{prompt: \"a\"}", "{\"prompt\": \"a\",}", "{\"prompt\": \"a\"} trailing", "{\"prompt\": \"a\"}{\"prompt\": \"b\"}" }));
                case 6: return Utf8("{\"prompt\": \"a\", \"max_tokens\": 1, \"prompt\": " + Pick(Values) + "}"); // duplicate keys
                case 7: return [0xEF, 0xBB, 0xBF, .. valid]; // a byte-order mark
                case 8: return Encoding.Unicode.GetBytes(Encoding.UTF8.GetString(valid)); // UTF-16
                default: return Utf8("{\"prompt\": \"" + string.Concat(Enumerable.Range(0, random.Next(1, 50)).Select(_ => Pick(new[] { "\\", "\\u", "\\ud83d", "\\x41", "\n", "\t", "\u0001", "\\u00" }))) + "\", \"max_tokens\": 1}");
            }
        }

        /// <summary>Bodies near and over the size limit: a prompt just under 1 MiB, and bodies over it.</summary>
        private byte[] Enormous() => random.Next(4) switch
        {
            0 => Utf8("{\"prompt\": \"" + new string('x', RequestBody.MaxBytes - 100) + "\", \"max_tokens\": 1}"),
            1 => Utf8("{\"prompt\": \"" + new string('x', RequestBody.MaxBytes + 1) + "\", \"max_tokens\": 1}"),
            2 => Utf8("{\"prompt\": \"a\", \"max_tokens\": 1" + new string(' ', 3 * RequestBody.MaxBytes) + "}"),
            _ => Utf8("{\"stop\": [" + string.Join(",", Enumerable.Repeat("\"" + new string('s', 300_000) + "\"", 4)) + "], \"prompt\": \"a\", \"max_tokens\": 1}"),
        };

        private (string, HttpMethod, string, byte[]?, bool) DeviceGet()
        {
            var id = random.Next(3) == 0 ? Pick(new[] { ownDevice, othersDevice, "nobody-" + random.Next(100_000) }) : DeviceId();
            // Some ids go unescaped: dot segments, slashes and raw unicode are what a hostile client sends.
            var raw = random.Next(3) == 0 && !id.Any(char.IsControl);
            var path = "/v1/devices/" + (raw ? id : Uri.EscapeDataString(id));
            return ("device-get", HttpMethod.Get, path, null, id.Any(char.IsControl));
        }
    }
}
