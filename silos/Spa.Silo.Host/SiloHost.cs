using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using OpenTelemetry.Metrics;
using Orleans.Dashboard;
using Orleans.Connections.Security;
using Spa.Edge;
using Spa.Grains;
using Spa.Grains.Abstractions;

namespace Spa.Silo;

/// <summary>
/// A silo host: an Orleans silo (the base model's shard and session grains) and the HTTP API on the same generic
/// host. Alone it is a one-process cluster (localhost clustering, memory storage); with Redis it joins the silos of
/// other processes and hosts (Redis clustering and storage). <c>Spa.Silo</c> and <c>spa serve</c> both build it here.
/// </summary>
public static class SiloHost
{
    public const string DefaultHttp = "127.0.0.1:8080";
    public const string UserItem = "spa.user";

    /// <summary>Where the Orleans dashboard is served, behind the API keys.</summary>
    public const string DashboardPath = "/dashboard";

    /// <summary>The cookie that carries the API key of a browser that opened <c>/dashboard?key=KEY</c>.</summary>
    public const string DashboardCookie = "spa_dashboard_key";

    /// <summary>
    /// Builds the host; throws <see cref="ArgumentException"/> for a bad option or a missing model, and
    /// <see cref="InvalidOperationException"/> when the Redis server does not answer.
    /// </summary>
    public static WebApplication Build(SiloHostOptions commandLine)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        var options = commandLine.WithConfiguration(builder.Configuration);
        options.Validate();
        var tls = options.LoadTls();
        var keys = new ApiKeys(builder.Configuration, options.ApiKey);
        var chatTemplate = ChatTemplate.Resolve(options.ChatTemplate, options.Model!);

        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            [$"{SpaModelOptions.Section}:ModelPath"] = options.Model,
            [$"{SpaModelOptions.Section}:Shards"] = options.Shards?.ToString(CultureInfo.InvariantCulture),
        });

        if (!string.IsNullOrWhiteSpace(options.Http)) builder.WebHost.UseUrls(SiloHostOptions.ToUrl(options.Http, options.Tls));
        else if (builder.Configuration[WebHostDefaults.ServerUrlsKey] is not { Length: > 0 } urls)
            builder.WebHost.UseUrls(SiloHostOptions.ToUrl(DefaultHttp, options.Tls));
        else if (options.Tls && urls.Contains("http://", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"ASPNETCORE_URLS has a plain http:// URL ({urls}) but TLS is on (--tls-cert): use https:// URLs or --http HOST:PORT");
        if (tls is { Certificate: var certificate })
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureHttpsDefaults(https => https.ServerCertificate = certificate));

        builder.Logging.AddFilter("Orleans", options.Quiet ? LogLevel.Error : LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Polly", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", options.Quiet ? LogLevel.Warning : LogLevel.Information);
        if (options.Quiet) builder.Logging.SetMinimumLevel(LogLevel.Warning);

        // Connected here rather than by the providers as the silo starts, so that a server that does not answer is one
        // clear error before anything runs; the clustering and both storages share this one connection.
        var redis = options.Redis is null ? null : RedisCluster.Connect(options);

        builder.UseOrleans(silo =>
        {
            if (redis is null)
            {
                silo.UseLocalhostClustering(options.SiloPort, options.GatewayPort, serviceId: options.ServiceId!, clusterId: options.ClusterId!);
                silo.AddSpaMemoryStorage();
                silo.UseInMemoryReminderService();
            }
            else RedisCluster.Configure(silo, options, redis, builder.Configuration);
            if (tls is { } transport) UseTls(silo, transport.Certificate, transport.Trusted);
            silo.AddSpaModel(builder.Configuration);
            silo.AddActivityPropagation(); // a grain call carries its caller's trace, so a completion is one trace across silos
            silo.AddDashboard();
            silo.AddAcceleratorPlacement(builder.Configuration);
        });

        builder.Services.AddSingleton(keys);
        builder.Services.AddSingleton(chatTemplate);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<Announcer>();
        builder.Services.AddSingleton<ServedModel>();
        builder.Services.AddSingleton<CompletionsEndpoint>();
        builder.Services.AddSingleton<DevicesEndpoint>();
        builder.Services.AddSingleton<SessionsEndpoint>();
        builder.Services.Configure<ServingOptions>(builder.Configuration.GetSection(ServingOptions.Section));
        builder.Services.AddSingleton<Admission>();
        builder.Services.AddSingleton<HostMetrics>();
        builder.Services.AddSingleton<GenAiMetrics>();
        builder.Services.AddOptions<MemoryTrimOptions>().Bind(builder.Configuration.GetSection(MemoryTrimOptions.Section))
            .Validate(o => { o.Validate(); return true; }).ValidateOnStart();
        builder.Services.AddHostedService<IdleMemoryTrim>();
        builder.Services.AddHostedService<ModelWarmup>(); // after the silo's own hosted service, so it starts once the silo is up
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(SpaTelemetry.MeterName, "Microsoft.Orleans")
            .AddRuntimeInstrumentation()
            // Every scrape sees the counts of that moment, not a copy up to the cache's age old.
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0))
            .AddTracing(builder.Configuration);

        var app = builder.Build();
        MapEndpoints(app);
        // Last, so that nothing is printed when the host cannot be built.
        if (keys.GeneratedKey is not null) app.Services.GetRequiredService<Announcer>().Say($"API key: {keys.GeneratedKey}");
        return app;
    }

    /// <summary>
    /// TLS on the gateway (devices and clients) and between silos, with the HTTP endpoint's certificate. A client need
    /// not present a certificate (devices prove themselves with their secret); a silo that connects to another
    /// trusts it only when its certificate chains to <paramref name="trusted"/>.
    /// </summary>
    private static void UseTls(ISiloBuilder silo, X509Certificate2 certificate, X509Certificate2Collection trusted) =>
        silo.UseTls(certificate, tls =>
        {
            tls.RemoteCertificateMode = RemoteCertificateMode.AllowCertificate;
            tls.RemoteCertificateValidation = (remote, chain, _) => TransportCertificates.ChainsTo(remote, chain, trusted);
        });

    /// <summary>The URLs Kestrel listens on (with the real port where port 0 was asked); valid once the host has started.</summary>
    public static IReadOnlyList<string> Addresses(WebApplication app) => [.. app.Urls];

    /// <summary>
    /// The dashboard takes an API key as the API does (Authorization: Bearer KEY) or, since a browser cannot send that
    /// header from its address bar, from the cookie that <c>/dashboard?key=KEY</c> sets once (HttpOnly, SameSite
    /// strict, this path only) before redirecting to the address without the key. False when it has answered.
    /// </summary>
    private static async Task<bool> AdmitToDashboard(HttpContext context, ApiKeys keys)
    {
        var request = context.Request;
        var fromQuery = request.Query["key"].ToString();
        var key = fromQuery.Length > 0 ? fromQuery : ApiKeys.BearerToken(request.Headers.Authorization) ?? request.Cookies[DashboardCookie];
        if (keys.Authenticate(key) is null)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await new ApiError(StatusCodes.Status401Unauthorized,
                $"missing or invalid API key: send the header 'Authorization: Bearer KEY', or open {DashboardPath}?key=KEY once in a browser",
                code: "invalid_api_key").WriteAsync(context.Response);
            return false;
        }
        if (fromQuery.Length == 0) return true;
        context.Response.Cookies.Append(DashboardCookie, fromQuery, new CookieOptions
        {
            HttpOnly = true,
            SameSite = SameSiteMode.Strict,
            Secure = request.IsHttps,
            Path = DashboardPath,
        });
        var rest = QueryString.Create(request.Query.Where(q => q.Key != "key"));
        context.Response.Redirect(request.PathBase + request.Path + rest);
        return false;
    }

    private static void MapEndpoints(WebApplication app)
    {
        var served = app.Services.GetRequiredService<ServedModel>();
        var keys = app.Services.GetRequiredService<ApiKeys>();
        // The meter provider first: measurements made before it listens are lost, and the meter records its zeros when built.
        app.Services.GetRequiredService<MeterProvider>();
        var metrics = app.Services.GetRequiredService<HostMetrics>();

        // Routing's own refusals (an unknown path, a method a path does not take) come without a body; give them the
        // API's error shape, so that a client parses every refusal the same way.
        app.UseStatusCodePages(context =>
        {
            var response = context.HttpContext.Response;
            var reason = response.StatusCode switch
            {
                StatusCodes.Status404NotFound => $"no endpoint at {context.HttpContext.Request.Path}",
                StatusCodes.Status405MethodNotAllowed => $"{context.HttpContext.Request.Method} is not a method of {context.HttpContext.Request.Path}",
                _ => $"the request was refused with status {response.StatusCode}",
            };
            return new ApiError(response.StatusCode, reason, code: response.StatusCode == StatusCodes.Status404NotFound ? "not_found" : null).WriteAsync(response);
        });

        // Authorization: Bearer KEY on /v1/*, then 503 until the model is ready.
        app.Use(async (context, next) =>
        {
            // Counted as the status line goes out, refusals included, so that a client that has its answer finds it counted.
            if (context.Request.Path.StartsWithSegments("/v1/completions") || context.Request.Path.StartsWithSegments("/v1/chat/completions"))
                context.Response.OnStarting(() =>
                {
                    metrics.Request(context.Response.StatusCode);
                    return Task.CompletedTask;
                });
            if (context.Request.Path.StartsWithSegments(DashboardPath))
            {
                if (await AdmitToDashboard(context, keys)) await next(context);
                return;
            }
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
                    await new ApiError(StatusCodes.Status503ServiceUnavailable, "the model is still loading", type: "server_error") { RetryAfterSeconds = 1 }
                        .WriteAsync(context.Response);
                    return;
                }
            }
            try
            {
                await next(context);
            }
            catch (Exception e) when ((e is SiloLossException || SiloLoss.IsSiloLoss(e)) && !context.Response.HasStarted)
            {
                await ApiError.ClusterUnavailable(e).WriteAsync(context.Response);
            }
        });

        app.MapGet("/healthz", (HttpContext context) => served.IsReady
            ? Results.Json(new { status = "ok", model = served.Name })
            : Results.Json(new { status = served.Failure is null ? "starting" : "failed", error = served.Failure }, statusCode: StatusCodes.Status503ServiceUnavailable));

        object Model() => new
        {
            id = served.Name,
            @object = "model",
            created = served.Created,
            owned_by = "spa",
            context_length = served.ContextLength,
            vocab_size = served.Description.VocabSize,
            layers = served.Description.Layers,
            shards = served.Shards,
        };
        app.MapGet("/v1/models", () => Results.Json(new { @object = "list", data = new[] { Model() } }));
        app.MapGet("/v1/models/{id}", (HttpContext context, string id) => id == served.Name
            ? context.Response.WriteAsJsonAsync(Model())
            : new ApiError(StatusCodes.Status404NotFound, $"The model '{id}' does not exist: this server serves '{served.Name}'", "model", "model_not_found")
                .WriteAsync(context.Response));

        // Prometheus scrapes it without a key: it must be reachable only from the monitoring network.
        app.MapPrometheusScrapingEndpoint();
        app.MapOrleansDashboard(routePrefix: DashboardPath);
        app.MapPost("/v1/completions", (HttpContext context) => context.RequestServices.GetRequiredService<CompletionsEndpoint>().Handle(context));
        app.MapPost("/v1/chat/completions", (HttpContext context) => context.RequestServices.GetRequiredService<CompletionsEndpoint>().HandleChat(context));
        app.MapPost("/v1/devices", (HttpContext context) => context.RequestServices.GetRequiredService<DevicesEndpoint>().Register(context));
        app.MapGet("/v1/devices/{id}", (HttpContext context, string id) => context.RequestServices.GetRequiredService<DevicesEndpoint>().Get(context, id));
        app.MapGet("/v1/sessions/{id}", (HttpContext context, string id) => context.RequestServices.GetRequiredService<SessionsEndpoint>().Get(context, id));
        app.MapPost("/v1/sessions/{id}/resume", (HttpContext context, string id) => context.RequestServices.GetRequiredService<SessionsEndpoint>().Resume(context, id));
        app.MapDelete("/v1/sessions/{id}", (HttpContext context, string id) => context.RequestServices.GetRequiredService<SessionsEndpoint>().Delete(context, id));
    }
}
