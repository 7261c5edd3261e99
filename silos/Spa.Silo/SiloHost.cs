using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spa.Grains;
using Spa.Model.Checkpoints;

namespace Spa.Silo;

/// <summary>
/// The one-process cluster: an Orleans silo (localhost clustering, memory storage for sessions, the base model's
/// shard and session grains) and the HTTP API on the same generic host. <c>Spa.Silo</c> and <c>spa serve</c> both
/// build it here.
/// </summary>
public static class SiloHost
{
    public const string DefaultHttp = "127.0.0.1:8080";
    public const string UserItem = "spa.user";

    /// <summary>The Orleans cluster and service id of the one-process cluster, which spa-device presents by default.</summary>
    public const string ClusterName = "spa";

    /// <summary>Builds the host; throws <see cref="ArgumentException"/> for a bad option or a missing model.</summary>
    public static WebApplication Build(SiloHostOptions options)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });

        var overrides = new Dictionary<string, string?>();
        if (!string.IsNullOrWhiteSpace(options.Model)) overrides[$"{SpaModelOptions.Section}:ModelPath"] = options.Model;
        if (options.Shards is int shards) overrides[$"{SpaModelOptions.Section}:Shards"] = shards.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var modelSection = builder.Configuration.GetSection(SpaModelOptions.Section);
        if (string.IsNullOrWhiteSpace(options.Model) && string.IsNullOrWhiteSpace(modelSection["ModelPath"]))
            overrides[$"{SpaModelOptions.Section}:ModelPath"] = ModelLocator.Resolve(null)
                ?? throw new ArgumentException($"no model given and none found: pass --model PATH, set {SpaModelOptions.Section}:ModelPath or ${ModelLocator.ModelVariable}");
        builder.Configuration.AddInMemoryCollection(overrides);
        var modelPath = modelSection["ModelPath"]!;
        if (!File.Exists(modelPath) && !Directory.Exists(modelPath))
            throw new ArgumentException($"the model {modelPath} does not exist");
        if (int.TryParse(modelSection["Shards"], out int configuredShards) && configuredShards <= 0)
            throw new ArgumentException($"{SpaModelOptions.Section}:Shards must be positive, got {configuredShards}");

        if (!string.IsNullOrWhiteSpace(options.Http)) builder.WebHost.UseUrls(SiloHostOptions.ToUrl(options.Http));
        else if (string.IsNullOrWhiteSpace(builder.Configuration[WebHostDefaults.ServerUrlsKey]))
            builder.WebHost.UseUrls(SiloHostOptions.ToUrl(DefaultHttp));

        builder.Logging.AddFilter("Orleans", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Polly", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);

        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(options.SiloPort, options.GatewayPort, serviceId: ClusterName, clusterId: ClusterName);
            silo.AddSpaMemoryStorage();
            silo.AddSpaModel(builder.Configuration);
            silo.AddAcceleratorPlacement(builder.Configuration);
        });

        var keys = new ApiKeys(builder.Configuration, options.ApiKey);
        if (keys.GeneratedKey is not null)
        {
            var announce = options.Announce ?? Console.Out;
            announce.WriteLine($"API key: {keys.GeneratedKey}");
            announce.Flush();
        }
        builder.Services.AddSingleton(keys);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<ServedModel>();
        builder.Services.AddSingleton<CompletionsEndpoint>();
        builder.Services.AddSingleton<DevicesEndpoint>();
        builder.Services.Configure<ServingOptions>(builder.Configuration.GetSection(ServingOptions.Section));
        builder.Services.AddSingleton<Admission>();
        builder.Services.AddHostedService<ModelWarmup>(); // after the silo's own hosted service, so it starts once the silo is up

        var app = builder.Build();
        MapEndpoints(app);
        return app;
    }

    /// <summary>The URLs Kestrel listens on (with the real port where port 0 was asked); valid once the host has started.</summary>
    public static IReadOnlyList<string> Addresses(WebApplication app) => [.. app.Urls];

    private static void MapEndpoints(WebApplication app)
    {
        var served = app.Services.GetRequiredService<ServedModel>();
        var keys = app.Services.GetRequiredService<ApiKeys>();

        // Authorization: Bearer KEY on /v1/*, then 503 until the model is ready.
        app.Use(async (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments("/v1"))
            {
                var user = keys.Authenticate(ApiKeys.BearerToken(context.Request.Headers.Authorization));
                if (user is null)
                {
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                    await new ApiError(StatusCodes.Status401Unauthorized,
                        "missing or invalid API key: send the header 'Authorization: Bearer KEY'", code: "invalid_api_key").WriteAsync(context.Response);
                    return;
                }
                context.Items[UserItem] = user;
                if (!served.IsReady)
                {
                    context.Response.Headers.RetryAfter = "1";
                    await new ApiError(StatusCodes.Status503ServiceUnavailable, "the model is still loading", type: "server_error").WriteAsync(context.Response);
                    return;
                }
            }
            await next(context);
        });

        app.MapGet("/healthz", (HttpContext context) => served.IsReady
            ? Results.Json(new { status = "ok", model = served.Name })
            : Results.Json(new { status = served.Failure is null ? "starting" : "failed", error = served.Failure }, statusCode: StatusCodes.Status503ServiceUnavailable));

        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = new[]
            {
                new
                {
                    id = served.Name,
                    @object = "model",
                    created = served.Created,
                    owned_by = "spa",
                    context_length = served.ContextLength,
                    vocab_size = served.Description.VocabSize,
                    layers = served.Description.Layers,
                    shards = served.Shards,
                },
            },
        }));

        app.MapPost("/v1/completions", (HttpContext context) => context.RequestServices.GetRequiredService<CompletionsEndpoint>().Handle(context));
        app.MapPost("/v1/devices", (HttpContext context) => context.RequestServices.GetRequiredService<DevicesEndpoint>().Register(context));
        app.MapGet("/v1/devices/{id}", (HttpContext context, string id) => context.RequestServices.GetRequiredService<DevicesEndpoint>().Get(context, id));
    }
}
