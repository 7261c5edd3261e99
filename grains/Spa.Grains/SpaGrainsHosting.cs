using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Spa.Grains.Placement;

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

    /// <summary>
    /// Places shard grains on accelerators: advertises this silo's accelerators (<see cref="AcceleratorOptions"/>, from
    /// the section "Spa:Accelerators" of <paramref name="configuration"/>) in its Orleans silo metadata under
    /// <see cref="AcceleratorMetadata.Key"/>, and registers the director. Every silo that may place or host a shard needs
    /// it. It calls <c>UseSiloMetadata</c> with the "Orleans:Metadata" section plus that key, so a host calls this
    /// instead of <c>UseSiloMetadata</c>.
    /// </summary>
    public static ISiloBuilder AddAcceleratorPlacement(this ISiloBuilder silo, IConfiguration configuration)
    {
        var section = configuration.GetSection(AcceleratorOptions.Section);
        var options = section.Get<AcceleratorOptions>() ?? new AcceleratorOptions();
        var metadata = configuration.GetSection("Orleans:Metadata").Get<Dictionary<string, string>>() ?? [];
        metadata[AcceleratorMetadata.Key] = AcceleratorMetadata.Format(options.Advertised());
        silo.UseSiloMetadata(metadata);
        silo.Services.Configure<AcceleratorOptions>(section);
        silo.Services.AddSingleton<ClusterAccelerators>();
        silo.Services.AddPlacementDirector<AcceleratorPlacement, AcceleratorPlacementDirector>();
        return silo;
    }
}
