using System.Text;
using Spa.Testing;

namespace Spa.Cli.Tests;

/// <summary>
/// Every mistake (bad files, bad options, bad command lines) ends in a non-zero exit and one clear line on stderr,
/// never a stack trace or a help page.
/// </summary>
public sealed class BadInputTests
{
    private static string[] Generate(params string[] more) => ["generate", "--prompt", "Once upon a time", "--max-tokens", "5", .. more];

    [Fact]
    public async Task MissingModelPath()
    {
        using var temp = new TempDir();
        var run = await Spa.RunAsync(Generate("--model", temp["nope.bin"]));

        Expect.OneLineError(run, "does not exist", exitCode: 1);
        Assert.Contains(temp["nope.bin"], run.Stderr);
    }

    [Fact]
    public async Task TruncatedCheckpoint()
    {
        using var temp = new TempDir();
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        File.WriteAllBytes(temp["stories260K.bin"], bytes[..(bytes.Length / 2)]);
        File.Copy(SharedData.Tok512, temp["tok512.bin"]);

        var run = await Spa.RunAsync(Generate("--model", temp.Path));

        Expect.OneLineError(run, "truncated", exitCode: 1);
    }

    [Fact]
    public async Task CheckpointWithExtraBytes()
    {
        using var temp = new TempDir();
        var bytes = File.ReadAllBytes(SharedData.Stories260KBin);
        File.WriteAllBytes(temp["stories260K.bin"], [.. bytes, .. new byte[1000]]);
        File.Copy(SharedData.Tok512, temp["tok512.bin"]);

        var run = await Spa.RunAsync(Generate("--model", temp["stories260K.bin"]));

        Expect.OneLineError(run, "trailing bytes", exitCode: 1);
    }

    [Fact]
    public async Task HuggingFaceConfigThatDoesNotMatchItsTensors()
    {
        using var temp = new TempDir();
        var converted = temp["hf"];
        Expect.Success(await Spa.RunAsync("convert", "--model", SharedData.Stories260K, "--out", converted));
        var configPath = Path.Combine(converted, "config.json");
        var config = File.ReadAllText(configPath);
        Assert.Contains("\"hidden_size\": 64", config);
        File.WriteAllText(configPath, config.Replace("\"hidden_size\": 64", "\"hidden_size\": 96"));

        var run = await Spa.RunAsync(Generate("--model", converted));

        Expect.OneLineError(run, "does not match the weights", exitCode: 1);
        Assert.Contains("hidden_size 96", run.Stderr);
    }

    [Fact]
    public async Task TokenizerOfUnknownFormat()
    {
        using var temp = new TempDir();
        var random = new byte[4096];
        new Random(1234).NextBytes(random);
        random[0] = 0xFF; // neither a llama2.c header nor a protobuf opening
        File.WriteAllBytes(temp["random.bin"], random);
        File.WriteAllText(temp["tokenizer.json"], "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", Encoding.UTF8);

        foreach (var file in new[] { temp["random.bin"], temp["tokenizer.json"] })
        {
            var run = await Spa.RunAsync(Generate("--model", SharedData.Stories260K, "--tokenizer", file));
            Expect.OneLineError(run, "not a llama2.c tokenizer file nor a SentencePiece model", exitCode: 1);
            Assert.Contains(file, run.Stderr);
        }
    }

    [Fact]
    public async Task PromptLongerThanTheContext()
    {
        var prompt = string.Concat(Enumerable.Repeat("hello ", 2000));
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--prompt", prompt, "--max-tokens", "5");

        Expect.OneLineError(run, "context holds 512", exitCode: 2); // and the prompt is not echoed before the error
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    public async Task MaxTokensThatIsNotPositive(string value)
    {
        var run = await Spa.RunAsync("generate", "--model", SharedData.Stories260K, "--max-tokens", value);

        Expect.OneLineError(run, $"--max-tokens must be positive, got {value}", exitCode: 2);
    }

    [Fact]
    public async Task NegativeTemperature()
    {
        var run = await Spa.RunAsync(Generate("--model", SharedData.Stories260K, "--temperature", "-1"));

        Expect.OneLineError(run, "temperature must be", exitCode: 2);
    }

    /// <summary>spa serve refuses values that cannot work before it loads anything.</summary>
    [Theory]
    [InlineData("--silo-port must be a port number from 1 to 65535, got 0", "--silo-port", "0")]
    [InlineData("--gateway-port must be a port number from 1 to 65535, got 70000", "--gateway-port", "70000")]
    [InlineData("--silo-port and --gateway-port must differ", "--silo-port", "12000", "--gateway-port", "12000")]
    [InlineData("--shards (Spa:Model:Shards) must be positive", "--shards", "0")]
    [InlineData("--http must be HOST:PORT", "--http", "127.0.0.1:http")]
    [InlineData("--redis (Spa:Cluster:Redis) must be HOST:PORT", "--redis", "127.0.0.1:99999")]
    [InlineData("--advertise (Spa:Cluster:Advertise) must be an IP address", "--redis", "127.0.0.1:6379", "--advertise", "not-an-address")]
    [InlineData("--advertise (Spa:Cluster:Advertise) needs --redis", "--advertise", "127.0.0.1")]
    [InlineData("--hosting kubernetes (Spa:Cluster:Hosting) needs --redis", "--hosting", "kubernetes")]
    [InlineData("--hosting (Spa:Cluster:Hosting) must be host or kubernetes, got 'docker'", "--hosting", "docker")]
    [InlineData("--tls-cert (Spa:Tls:CertificatePath): the file /no/such/cert.pem does not exist", "--tls-cert", "/no/such/cert.pem")]
    [InlineData("--tls-key (Spa:Tls:KeyPath) and Spa:Tls:TrustPath need --tls-cert", "--tls-key", "/no/such/key.pem")]
    public async Task ServeWithBadValues(string phrase, params string[] options)
    {
        var run = await Spa.RunAsync(["serve", "--model", SharedData.Stories260K, "--api-key", "k", .. options]);

        Expect.OneLineError(run, phrase, exitCode: 2);
    }

    /// <summary>TLS is never dropped silently: a plain URL from ASPNETCORE_URLS beside --tls-cert is refused.</summary>
    [Fact]
    public async Task ServeRefusesAPlainUrlWithTls()
    {
        using var certificate = new TestCertificate();
        var run = await Spa.RunAsync(["serve", "--model", SharedData.Stories260K, "--api-key", "k", "--tls-cert", certificate.CertificatePath, "--tls-key", certificate.KeyPath],
            environment: new Dictionary<string, string?> { ["ASPNETCORE_URLS"] = "http://127.0.0.1:0" });

        Expect.OneLineError(run, "ASPNETCORE_URLS has a plain http:// URL (http://127.0.0.1:0) but TLS is on", exitCode: 2);
    }

    /// <summary>The silo program and spa serve share one definition of their options.</summary>
    [Fact]
    public async Task TheSiloProgramTakesTheOptionsOfServe()
    {
        // The option lines of the help, less --help and --version (the silo program, a root command, has both).
        static async Task<string> Options(SpaResult help)
        {
            Assert.True(help.ExitCode == 0, help.ToString());
            var text = help.Stdout.ReplaceLineEndings("\n");
            var lines = text[text.IndexOf("Options:", StringComparison.Ordinal)..].Split('\n');
            return string.Join("\n", lines.Where(line => !line.Contains("--help", StringComparison.Ordinal) && !line.Contains("--version", StringComparison.Ordinal)));
        }
        var silo = await Options(await Spa.RunAsync(["--help"], program: Spa.SiloDll));
        Assert.Equal(await Options(await Spa.RunAsync("serve", "--help")), silo);
        foreach (var option in new[] { "--model", "--http", "--redis", "--silo-port", "--gateway-port", "--advertise", "--hosting", "--tls-cert", "--tls-key" })
            Assert.Contains(option, silo);
    }

    /// <summary>The silo program checks the same options the same way, and says so in one line.</summary>
    [Theory]
    [InlineData(2, "--silo-port must be a port number from 1 to 65535, got 0", "--silo-port", "0")]
    [InlineData(2, "Unrecognized command or argument '--bogus'", "--bogus", "1")]
    [InlineData(2, "--hosting kubernetes (Spa:Cluster:Hosting) needs the environment variable POD_NAME", "--hosting", "kubernetes", "--redis", "127.0.0.1:6379")]
    [InlineData(1, "the Redis server 127.0.0.1:1 does not answer", "--redis", "127.0.0.1:1")]
    public async Task SiloProgramWithBadValues(int exitCode, string phrase, params string[] options)
    {
        var run = await Spa.RunAsync(["--model", SharedData.Stories260K, "--api-key", "k", .. options], program: Spa.SiloDll);

        Assert.True(run.ExitCode == exitCode, $"expected exit code {exitCode}\n{run}");
        Assert.StartsWith($"Spa.Silo: error: {phrase}", Assert.Single(run.StderrLines));
        Assert.True(run.Stdout.Length == 0, "expected nothing on stdout\n" + run);
    }

    [Fact]
    [Trait("Category", "Timing")] // the server must give up within 30 s
    public async Task ServeWithARedisServerThatDoesNotAnswer()
    {
        var ports = Ports.Free(4); // the first stands for a Redis server: nothing listens there
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var run = await Spa.RunAsync(["serve", "--model", SharedData.Stories260K, "--api-key", "k", "--redis", $"127.0.0.1:{ports[0]}",
            "--http", $"127.0.0.1:{ports[1]}", "--silo-port", ports[2].ToString(), "--gateway-port", ports[3].ToString()],
            timeout: TimeSpan.FromSeconds(60));

        Expect.OneLineError(run, $"the Redis server 127.0.0.1:{ports[0]} does not answer", exitCode: 1);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed.TotalSeconds:F1} s to give up");
    }

    /// <summary>System.CommandLine's own parse errors: one line on stderr, exit 2, no help page on stdout.</summary>
    [Theory]
    [InlineData("'abc'", "generate", "--max-tokens", "abc")]
    [InlineData("'--bogus'", "generate", "--bogus")]
    [InlineData("'extra'", "generate", "--max-tokens", "5", "extra")]
    [InlineData("--out", "convert", "--model", "x.bin")]
    [InlineData("Required command", "bench")]
    [InlineData("Required command")]
    [InlineData("'frobnicate'", "frobnicate")]
    [InlineData("Unrecognized command or argument '--bogus'. Cannot parse argument 'x'", "generate", "--bogus", "--max-tokens", "x")]
    [InlineData("'--nope'", "bench", "decode", "--nope")]
    public async Task CommandLineThatDoesNotParse(string phrase, params string[] args)
    {
        var run = await Spa.RunAsync(args);

        Expect.OneLineError(run, phrase, exitCode: 2);
        Assert.Contains("--help", run.Stderr);
    }

    [Fact]
    public async Task HelpStillPrintsHelpOnStdout()
    {
        var run = await Spa.RunAsync("generate", "--help");

        Expect.Success(run);
        Assert.Contains("--max-tokens", run.Stdout);
        Assert.Equal("", run.Stderr);
    }
}
