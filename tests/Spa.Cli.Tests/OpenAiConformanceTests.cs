using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Sampling;
using Spa.Model.Tokenizers;
using Spa.Testing;
using Xunit.Abstractions;

namespace Spa.Cli.Tests;

/// <summary>
/// A real <c>spa serve</c> driven by the official OpenAI SDK for Node and LangChain's OpenAI integration
/// (tests/conformance, installed by <c>npm ci</c>): models, completions plain and streamed with and without usage,
/// prompt arrays and token prompts, echo and stop, chat plain and streamed, seeds, every error class, an error
/// mid-stream, log-probabilities, penalties and logit bias, and LangChain's completion and chat models. Every answer is compared with the in-process engine's.
/// </summary>
public sealed class OpenAiConformanceTests(ITestOutputHelper output)
{
    private const string Key = "conformance-key";
    private const int MaxTokens = 16;
    private const string Prompt = "Once upon a time";
    private const string Other = "The little dog";
    private const string ChatSystem = "Lily had a red ball.";

    private static readonly string Folder = Path.Combine(SharedData.RepoRoot, "tests", "conformance");

    private static readonly string[] Checks =
    [
        "models.list and models.retrieve", "completions.create", "completions streamed without usage", "completions streamed with include_usage",
        "prompt arrays and token prompts", "echo and stop", "logprobs, penalties and logit_bias", "settings not served are refused by name", "chat.completions.create", "chat streamed",
        "seed reproducibility and seedless variety", "error classes", "an error mid-stream reaches the SDK as an error",
        "LangChain OpenAI invoke, generate, batch and stream", "LangChain ChatOpenAI invoke and stream",
    ];

    [Fact]
    public async Task TheOpenAiSdkAndLangChainWorkUnchanged()
    {
        Assert.True(Directory.Exists(Path.Combine(Folder, "node_modules", "openai")),
            "tests/conformance/node_modules is missing: run `npm ci --prefix tests/conformance` (.ci/run does)");
        var ports = Ports.Free(3);
        await using var serve = Spa.Start(["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}", "--api-key", Key,
            "--silo-port", ports[1].ToString(), "--gateway-port", ports[2].ToString()], new Dictionary<string, string?>
        {
            ["Spa__Serving__MaxConcurrentGenerations"] = "2",
            ["Spa__Serving__MaxQueuedGenerations"] = "0",
        });
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports[0]}") };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Key);
        await ServeProcess.WaitUntilHealthy(serve, http);
        // A device on a slow link: its generations last long enough to fill the places and to be deleted mid-stream.
        string device = "slow-" + Guid.NewGuid().ToString("N")[..8];
        using (var registered = await http.PostAsJsonAsync("/v1/devices", new { device_id = device, simulated = new { plugin_dir = RandomPlugin.Ladder, profile = "phone-4g" } }))
            Assert.Equal(HttpStatusCode.Created, registered.StatusCode);

        var start = new ProcessStartInfo("node") { WorkingDirectory = Folder, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("conformance.mjs");
        start.Environment["SPA_BASE_URL"] = $"http://127.0.0.1:{ports[0]}/v1";
        start.Environment["SPA_API_KEY"] = Key;
        start.Environment["SPA_DEVICE"] = device;
        start.Environment["SPA_EXPECTED"] = JsonSerializer.Serialize(Expected());
        await using var node = ChildProcess.Start(start);
        int exit = await node.WaitForExitAsync(TimeSpan.FromMinutes(5));
        output.WriteLine(node.Stdout);
        Assert.True(exit == 0, node.ToString());
        var summary = JsonDocument.Parse(node.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1]).RootElement;
        Assert.Equal(Checks, summary.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("name").GetString()));
        Assert.All(summary.GetProperty("results").EnumerateArray(), r => Assert.True(r.GetProperty("ok").GetBoolean(), r.ToString()));
        Assert.Equal(0, await serve.TerminateAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>The in-process engine's greedy generations that the SDK's answers must equal.</summary>
    private static object Expected()
    {
        using var model = LlamaModel.Load(SharedData.Stories260K, new ModelOptions());
        var generator = new TextGenerator(model, TokenizerLoader.Load(SharedData.Tok512, model.Config.VocabSize));
        var plain = generator.Generate(Prompt, MaxTokens, SamplingOptions.Greedy);
        Assert.Equal(FinishReason.Length, plain.Finish);
        // A stop string the greedy text holds, so that the stopped completion ends before it.
        var stop = plain.Text.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2];
        const int PenalisedTokens = 40;
        var penalised = generator.Generate(Prompt, PenalisedTokens, new SamplingOptions { PresencePenalty = 0.7, FrequencyPenalty = 1.2 });
        Assert.NotEqual(generator.Generate(Prompt, PenalisedTokens, SamplingOptions.Greedy).Text, penalised.Text);
        int biasToken = generator.EncodePrompt(" Lily")[^1];
        return new
        {
            model = "stories260K",
            prompt = Prompt,
            text = plain.Text,
            promptTokens = plain.PromptTokens.Count,
            completionTokens = plain.Tokens.Count,
            maxTokens = MaxTokens,
            promptIds = generator.EncodePrompt(Prompt),
            other = Other,
            otherText = generator.Generate(Other, MaxTokens, SamplingOptions.Greedy).Text,
            stop,
            stopText = generator.Generate(Prompt, MaxTokens, SamplingOptions.Greedy, [stop]).Text,
            penalisedTokens = PenalisedTokens,
            penalisedText = penalised.Text,
            biasToken,
            biasedText = generator.Generate(Prompt, 4, SamplingOptions.Greedy with { LogitBias = new Dictionary<int, double> { [biasToken] = 100 } }).Text,
            chatSystem = ChatSystem,
            chatUser = Prompt,
            // stories260K is a llama2.c checkpoint: chat uses the plain template, the messages' text one per line.
            chatText = generator.Generate($"{ChatSystem}\n{Prompt}", MaxTokens, SamplingOptions.Greedy).Text,
        };
    }
}
