using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Spa.Grains;

public static class SpaGrainsHosting
{
    /// <summary>The grain storage that holds decoding sessions and devices; a host registers it (memory storage in one process).</summary>
    public const string SessionStorage = "spa-sessions";

    /// <summary>The grain storage of Orleans' stream subscriptions (its fixed name); a host registers it beside <see cref="SessionStorage"/>.</summary>
    public const string PubSubStorage = "PubSubStore";

    /// <summary>
    /// Registers the model host with options bound from <paramref name="configuration"/>'s "Spa:Model" and "Spa:Edge"
    /// sections, and the token streams.
    /// </summary>
    public static ISiloBuilder AddSpaModel(this ISiloBuilder silo, IConfiguration configuration)
    {
        silo.Services.AddSpaModel(configuration);
        return silo.AddMemoryStreams(TokenStreams.Provider);
    }

    /// <summary>The model host and its options, without the silo's parts.</summary>
    public static IServiceCollection AddSpaModel(this IServiceCollection services, IConfiguration configuration)
    {
        services.Configure<SpaModelOptions>(configuration.GetSection(SpaModelOptions.Section));
        services.Configure<EdgeOptions>(configuration.GetSection(EdgeOptions.Section));
        return services.AddSingleton<ModelHost>();
    }

    /// <summary>As above, with the model options set in code (tests, benchmarks, the demo).</summary>
    public static ISiloBuilder AddSpaModel(this ISiloBuilder silo, Action<SpaModelOptions> configure, Action<EdgeOptions>? edge = null)
    {
        silo.Services.Configure(configure);
        if (edge is not null) silo.Services.Configure(edge);
        silo.Services.AddSingleton<ModelHost>();
        return silo.AddMemoryStreams(TokenStreams.Provider);
    }

    /// <summary>Memory storage for sessions, devices and stream subscriptions: the one-process cluster's.</summary>
    public static ISiloBuilder AddSpaMemoryStorage(this ISiloBuilder silo) =>
        silo.AddMemoryGrainStorage(SessionStorage).AddMemoryGrainStorage(PubSubStorage);
}
