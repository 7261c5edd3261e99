using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Spa.CommandLine;

namespace Spa.LoadTest;

/// <summary>
/// Targets a request must meet to count toward goodput, as <c>--slo ttft_ms=..,tpot_ms=..,e2el_ms=..</c> gives them
/// (milliseconds; an absent one does not bind).
/// </summary>
public sealed record ServiceLevels(double? TtftMs, double? TpotMs, double? E2elMs)
{
    public static readonly ServiceLevels None = new(null, null, null);

    public static ServiceLevels Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return None;
        var levels = None;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pair = part.Split('=', 2);
            if (pair.Length != 2 || !double.TryParse(pair[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double ms) || !(ms > 0) || double.IsInfinity(ms))
                throw new UsageException($"--slo: '{part}' is not NAME=MILLISECONDS with a positive number");
            levels = pair[0] switch
            {
                "ttft_ms" => levels with { TtftMs = ms },
                "tpot_ms" => levels with { TpotMs = ms },
                "e2el_ms" => levels with { E2elMs = ms },
                _ => throw new UsageException($"--slo: unknown target '{pair[0]}': use ttft_ms, tpot_ms and e2el_ms"),
            };
        }
        return levels;
    }

    public bool Met(HttpSample sample) =>
        (TtftMs is not { } ttft || sample.TtftMs <= ttft) && (TpotMs is not { } tpot || sample.TpotMs <= tpot) && (E2elMs is not { } e2el || sample.E2elMs <= e2el);

    public override string ToString() => string.Join(", ", new[] { ("ttft_ms", TtftMs), ("tpot_ms", TpotMs), ("e2el_ms", E2elMs) }
        .Where(l => l.Item2 is not null).Select(l => $"{l.Item1} <= {l.Item2!.Value.ToString(CultureInfo.InvariantCulture)}"));
}

/// <summary>
/// One streamed request as the client saw it: time to first token, the gaps between later chunks (inter-token
/// latency), time per output token after the first (<c>(e2el - ttft) / (output - 1)</c>), end to end, and the token
/// counts the server's usage chunk reported. <see cref="Error"/> is null for a request that completed.
/// </summary>
public sealed record HttpSample(double TtftMs, double TpotMs, double E2elMs, float[] ItlMs, int InputTokens, int OutputTokens, string? Error);

/// <summary>What an HTTP load run is: the endpoint, the shape of the load, the requests and the targets.</summary>
public sealed record HttpLoadSettings(Uri BaseUrl, string? ApiKey, bool Chat, int Concurrency, double? Rate, double DurationSeconds, int Requests,
    int MaxTokens, int Seed, ServiceLevels Slo);

/// <summary>
/// Loads a running OpenAI-compatible endpoint over HTTP (<c>spa-load --url</c>): streamed completions (or chat
/// completions) with <c>stream_options.include_usage</c>, closed loop or Poisson arrivals, each request timed as the
/// common serving benchmarks time it, for comparison with other servers.
/// </summary>
public sealed class HttpLoad(HttpLoadSettings settings, HttpClient http)
{
    // Openings of stories, so that a story model and a chat model both have something to continue.
    private static readonly string[] Openings =
    [
        "Once upon a time", "One day, a little girl", "The big dog", "Lily and Ben went to the park", "There was a small cat",
        "Tom had a red ball", "In a small town", "The sun was shining", "A little bird", "Sam wanted to play",
    ];

    /// <summary>The model the endpoint serves (the first of <c>/v1/models</c>).</summary>
    public async Task<string> ModelAsync(CancellationToken cancellation)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(settings.BaseUrl, "v1/models"));
        Authorize(request);
        using var response = await http.SendAsync(request, cancellation);
        var body = await response.Content.ReadAsStringAsync(cancellation);
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"GET /v1/models answered {(int)response.StatusCode}: {body}");
        var data = JsonDocument.Parse(body).RootElement.GetProperty("data");
        return data.GetArrayLength() > 0 ? data[0].GetProperty("id").GetString()! : throw new InvalidOperationException("the endpoint serves no model");
    }

    /// <summary>Runs the load and returns every request's sample, in the order they finished, and the run's length.</summary>
    public async Task<(List<HttpSample> Samples, double Seconds)> RunAsync(string model, Action<int> progress, CancellationToken cancellation)
    {
        var samples = new List<HttpSample>();
        var random = new Random(settings.Seed);
        var clock = Stopwatch.StartNew();
        int started = 0;
        bool TryStart() => clock.Elapsed.TotalSeconds < settings.DurationSeconds && !cancellation.IsCancellationRequested
            && (settings.Requests == 0 || Interlocked.Increment(ref started) <= settings.Requests);
        async Task One(string prompt)
        {
            var sample = await Request(model, prompt, cancellation);
            lock (samples)
            {
                samples.Add(sample);
                progress(samples.Count);
            }
        }
        string NextPrompt()
        {
            lock (random) return $"{Openings[random.Next(Openings.Length)]} {Openings[random.Next(Openings.Length)].ToLowerInvariant()}";
        }

        if (settings.Rate is { } rate)
        {
            var inFlight = new List<Task>();
            await foreach (var _ in Arrivals.Poisson(random, rate, clock, cancellation))
            {
                if (!TryStart()) break;
                var prompt = NextPrompt();
                inFlight.Add(Task.Run(() => One(prompt), CancellationToken.None));
            }
            await Task.WhenAll(inFlight);
        }
        else
        {
            await Task.WhenAll(Enumerable.Range(0, settings.Concurrency).Select(_ => Task.Run(async () =>
            {
                while (TryStart()) await One(NextPrompt());
            }, CancellationToken.None)));
        }
        return (samples, clock.Elapsed.TotalSeconds);
    }

    private async Task<HttpSample> Request(string model, string prompt, CancellationToken cancellation)
    {
        var body = new Dictionary<string, object>
        {
            ["model"] = model, ["max_tokens"] = settings.MaxTokens, ["stream"] = true, ["stream_options"] = new { include_usage = true },
        };
        if (settings.Chat) body["messages"] = new[] { new { role = "user", content = prompt } };
        else body["prompt"] = prompt;
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(settings.BaseUrl, settings.Chat ? "v1/chat/completions" : "v1/completions"))
        {
            Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"),
        };
        Authorize(request);

        var start = Stopwatch.GetTimestamp();
        double? ttft = null;
        long last = start;
        var itls = new List<float>();
        int input = 0, output = 0;
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellation);
            if (!response.IsSuccessStatusCode)
                return Failed($"{(int)response.StatusCode}: {Message(await response.Content.ReadAsStringAsync(cancellation))}");
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellation));
            while (await reader.ReadLineAsync(cancellation) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                var data = line["data: ".Length..];
                if (data == "[DONE]") break;
                var chunk = JsonDocument.Parse(data).RootElement;
                if (chunk.TryGetProperty("error", out var error)) return Failed(Message(error));
                if (chunk.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                    (input, output) = (usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32());
                if (!HasText(chunk)) continue;
                long now = Stopwatch.GetTimestamp();
                if (ttft is null) ttft = Stopwatch.GetElapsedTime(start, now).TotalMilliseconds;
                else itls.Add((float)Stopwatch.GetElapsedTime(last, now).TotalMilliseconds);
                last = now;
            }
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException)
        {
            return Failed($"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
        }
        double e2el = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        if (ttft is null) return Failed("the stream carried no text");
        return new HttpSample(ttft.Value, output > 1 ? (e2el - ttft.Value) / (output - 1) : 0, e2el, [.. itls], input, output, null);

        HttpSample Failed(string reason) => new(0, 0, Stopwatch.GetElapsedTime(start).TotalMilliseconds, [], 0, 0, reason);
    }

    private void Authorize(HttpRequestMessage request)
    {
        if (settings.ApiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", settings.ApiKey);
    }

    /// <summary>Whether a chunk carries generated text (a completion's <c>text</c> or a chat's <c>delta.content</c>).</summary>
    private static bool HasText(JsonElement chunk)
    {
        if (!chunk.TryGetProperty("choices", out var choices) || choices.GetArrayLength() == 0) return false;
        var choice = choices[0];
        var text = choice.TryGetProperty("text", out var t) ? t
            : choice.TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var c) ? c : default;
        return text.ValueKind == JsonValueKind.String && text.GetString()!.Length > 0;
    }

    private static string Message(string body)
    {
        try
        {
            return Message(JsonDocument.Parse(body).RootElement.GetProperty("error"));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return body.Length > 200 ? body[..200] : body;
        }
    }

    private static string Message(JsonElement error) =>
        error.TryGetProperty("code", out var code) && code.ValueKind == JsonValueKind.String ? code.GetString()!
        : error.TryGetProperty("message", out var message) ? message.GetString() ?? "error" : "error";
}
