using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Spa.Grains;

public static class SpaGrainsHosting
{
    /// <summary>The grain storage that holds decoding sessions; a host registers it (memory storage in one process).</summary>
    public const string SessionStorage = "spa-sessions";

    /// <summary>Registers the model host with options bound from <paramref name="section"/> (normally "Spa:Model").</summary>
    public static ISiloBuilder AddSpaModel(this ISiloBuilder silo, IConfiguration section)
    {
        silo.Services.AddSpaModel(section);
        return silo;
    }

    public static IServiceCollection AddSpaModel(this IServiceCollection services, IConfiguration section)
    {
        services.Configure<SpaModelOptions>(section);
        services.AddSingleton<ModelHost>();
        return services;
    }

    public static ISiloBuilder AddSpaModel(this ISiloBuilder silo, Action<SpaModelOptions> configure)
    {
        silo.Services.Configure(configure);
        silo.Services.AddSingleton<ModelHost>();
        return silo;
    }
}
