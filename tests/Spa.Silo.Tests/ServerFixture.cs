using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Spa.Model;
using Spa.Model.Generation;
using Spa.Model.Sampling;
using Spa.Model.Tokenizers;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// One silo + HTTP host for all tests, built by <see cref="SiloHost.Build"/> as Spa.Silo and <c>spa serve</c> build
/// it: stories260K, Kestrel on a free loopback port, a fixed API key, free silo and gateway ports.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime, IAsyncDisposable
{
    private (string Variable, string Value)[] _settings = [];

    /// <summary>A host built with these environment variables set (configuration such as Spa__Serving__...).</summary>
    public static ServerFixture With(params (string Variable, string Value)[] settings) => new() { _settings = settings };

    /// <summary>A host with TLS on HTTP and the gateway from <paramref name="certificate"/>'s PEM files; its clients trust that certificate.</summary>
    public static ServerFixture WithTls(TestCertificate certificate, params (string Variable, string Value)[] settings) => new()
    {
        _settings = [("Spa__Tls__CertificatePath", certificate.CertificatePath), ("Spa__Tls__KeyPath", certificate.KeyPath), .. settings],
        Trusted = certificate.Certificate,
    };

    /// <summary>The certificate this host's clients trust (over HTTPS); null for a plain HTTP host.</summary>
    public X509Certificate2? Trusted { get; private init; }

    public const string Key = "test-key-1";
    public const string OtherKey = "test-key-2";

    public WebApplication App { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>The Orleans gateway port devices connect to.</summary>
    public int GatewayPort => _ports[1];

    private readonly int[] _ports = Ports.Free(2); // silo, gateway
    public StringWriter Announcements { get; } = new();

    /// <summary>The host's <c>/metrics</c> now, read without a key as Prometheus reads it.</summary>
    public async Task<Exposition> ScrapeAsync()
    {
        using var client = Client(null);
        return await Exposition.ScrapeAsync(client);
    }

    /// <summary>
    /// A client that sends <see cref="Key"/>; over HTTPS it trusts <paramref name="trusted"/> (default <see cref="Trusted"/>)
    /// and nothing else, with the host name checked.
    /// </summary>
    public HttpClient Client(string? key = Key, X509Certificate2? trusted = null)
    {
        trusted ??= Trusted;
        // No draining of an abandoned response: a client that disposes a stream it stopped reading closes the connection,
        // as a user who goes away does, instead of quietly reading the rest to reuse the connection.
        var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0 };
        if (trusted is not null)
            handler.SslOptions.CertificateChainPolicy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                CustomTrustStore = { trusted },
                RevocationMode = X509RevocationMode.NoCheck,
            };
        var client = new HttpClient(handler) { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return client;
    }

    public async Task InitializeAsync()
    {
        // A second key through the configuration, as an operator would set it (Spa__Auth__Keys__KEY=USER).
        Environment.SetEnvironmentVariable($"Spa__Auth__Keys__{OtherKey}", "bob");
        foreach (var (variable, value) in _settings) Environment.SetEnvironmentVariable(variable, value); // read once, by Build
        App = SiloHost.Build(new SiloHostOptions
        {
            Model = SharedData.Stories260K,
            Http = "127.0.0.1:0",
            ApiKey = Key,
            SiloPort = _ports[0],
            GatewayPort = GatewayPort,
            Announce = Announcements,
        });
        foreach (var (variable, _) in _settings) Environment.SetEnvironmentVariable(variable, null);
        await App.StartAsync();
        BaseAddress = new Uri(App.Urls.Single());
        using var client = Client(null);
        await Eventually.True(async () =>
        {
            using var health = await client.GetAsync("/healthz");
            return health.StatusCode == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(60), "the host to become healthy");
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        Environment.SetEnvironmentVariable($"Spa__Auth__Keys__{OtherKey}", null);
    }

    async ValueTask IAsyncDisposable.DisposeAsync() => await DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "server";
}

/// <summary>The in-process engine: what the server must reproduce exactly.</summary>
public static class Reference
{
    private static readonly Lazy<TextGenerator> Generator = new(() =>
    {
        var model = LlamaModel.Load(SharedData.Stories260K, new ModelOptions());
        return new TextGenerator(model, TokenizerLoader.Load(SharedData.Tok512, model.Config.VocabSize));
    });
    private static readonly object Gate = new();

    public static GenerationResult Generate(string prompt, int maxTokens, SamplingOptions? sampling = null, IReadOnlyList<string>? stop = null)
    {
        lock (Gate) return Generator.Value.Generate(prompt, maxTokens, sampling ?? SamplingOptions.Greedy, stop);
    }

    /// <summary>The greedy continuation of <paramref name="tokens"/> (BOS and prompt included), token by token.</summary>
    public static IReadOnlyList<int> Continue(IReadOnlyList<int> tokens, int maxTokens)
    {
        lock (Gate) return Generator.Value.Generate(tokens, maxTokens, SamplingOptions.Greedy).Tokens;
    }

    public static IReadOnlyList<int> Encode(string prompt)
    {
        lock (Gate) return Generator.Value.EncodePrompt(prompt);
    }
}
