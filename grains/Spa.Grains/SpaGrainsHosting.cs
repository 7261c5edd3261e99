using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Newtonsoft.Json;
using Orleans.Configuration;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Serialization;
using Orleans.Storage;
using Spa.Grains.Abstractions;
using Spa.Grains.Placement;
using Spa.Grains.Sessions;
using Spa.Grains.Storage;
using StackExchange.Redis;

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
        return silo.AddTokenStreams();
    }

    /// <summary>The model host and its options, without the silo's parts.</summary>
    public static IServiceCollection AddSpaModel(this IServiceCollection services, IConfiguration configuration)
    {
        services.Configure<SpaModelOptions>(configuration.GetSection(SpaModelOptions.Section));
        services.Configure<EdgeOptions>(configuration.GetSection(EdgeOptions.Section));
        services.Configure<SpaSessionOptions>(configuration.GetSection(SpaSessionOptions.Section));
        return services.AddSpaServices();
    }

    /// <summary>As above, with the model options set in code (tests, benchmarks, the demo).</summary>
    public static ISiloBuilder AddSpaModel(this ISiloBuilder silo, Action<SpaModelOptions> configure, Action<EdgeOptions>? edge = null)
    {
        silo.Services.Configure(configure);
        if (edge is not null) silo.Services.Configure(edge);
        silo.Services.AddSpaServices();
        return silo.AddTokenStreams();
    }

    /// <summary>Orleans' internal grain class that keeps one stream's producers and consumers.</summary>
    public const string PubSubRendezvousGrainClass = "Orleans.Streams.PubSubRendezvousGrain";

    /// <summary>
    /// The token streams, with per-session stream state and activations released after
    /// <see cref="SpaSessionOptions.IdleLifetime"/>: every session has its own stream, so the pulling agent's per-stream
    /// state, the stream's pub-sub rendezvous grain (and its entry in <see cref="PubSubStorage"/>) and the session
    /// activation are one set per request. Published tokens leave the queue cache after
    /// <see cref="SpaSessionOptions.TokenCache"/>, a stream's stored pub-sub state goes with its session
    /// (<see cref="TokenStreamSubscriptions"/>), and the grain directory cache, which gains the location of every
    /// request's session, holds at most <see cref="SpaSessionOptions.DirectoryCacheEntries"/>.
    /// </summary>
    private static ISiloBuilder AddTokenStreams(this ISiloBuilder silo)
    {
        silo.Services.AddOptions<StreamPullingAgentOptions>(TokenStreams.Provider)
            .Configure<IOptions<SpaSessionOptions>>((agent, sessions) => agent.StreamInactivityPeriod = sessions.Value.IdleLifetime);
        // A maximum age of zero makes every token but the newest old enough: each one goes after the window, also when
        // no newer token comes to push it out.
        silo.Services.AddOptions<StreamCacheEvictionOptions>(TokenStreams.Provider).Configure<IOptions<SpaSessionOptions>>((cache, sessions) =>
        {
            cache.DataMinTimeInCache = sessions.Value.TokenCache;
            cache.DataMaxAgeInCache = TimeSpan.Zero;
            cache.MetadataMinTimeInCache = sessions.Value.TokenCache;
        });
        silo.Services.AddOptions<GrainDirectoryOptions>().Configure<IOptions<SpaSessionOptions>>((directory, sessions) =>
            directory.CacheSize = sessions.Value.DirectoryCacheEntries);
        silo.Services.AddOptions<GrainCollectionOptions>().Configure<IOptions<SpaSessionOptions>>((collection, sessions) =>
        {
            collection.ClassSpecificCollectionAge[PubSubRendezvousGrainClass] = sessions.Value.IdleLifetime;
            collection.ClassSpecificCollectionAge[typeof(DecodingSessionGrain).FullName!] = sessions.Value.IdleLifetime;
        });
        silo.Services.AddKeyedSingleton<IGrainStorage>(TokenStreams.Provider, (services, _) => services.GetRequiredService<TokenStreamSubscriptions>());
        silo.Services.AddSingleton<TokenStreamSubscriptions>();
        return silo.AddMemoryStreams(TokenStreams.Provider);
    }

    /// <summary>What the grains take besides their options: the model host and the meter (with the meter factory, which a bare service collection lacks).</summary>
    private static IServiceCollection AddSpaServices(this IServiceCollection services)
    {
        services.AddOptions<SpaSessionOptions>().Validate(o => { o.Validate(); return true; }).ValidateOnStart();
        return services.AddGrainMetrics().AddSingleton<ModelHost>().AddSingleton<TokenPathProfile>();
    }

    /// <summary>The meter, once, whether the model or the memory storage registers it first.</summary>
    private static IServiceCollection AddGrainMetrics(this IServiceCollection services)
    {
        services.AddMetrics().TryAddSingleton<GrainMetrics>();
        return services;
    }

    /// <summary>Memory storage for sessions, devices and stream subscriptions: the one-process cluster's.</summary>
    public static ISiloBuilder AddSpaMemoryStorage(this ISiloBuilder silo) =>
        silo.AddSpaMemoryStorage(SessionStorage).AddSpaMemoryStorage(PubSubStorage);

    /// <summary>
    /// Redis storage for sessions, devices and stream subscriptions: the multi-host cluster's. A cleared state's key is
    /// deleted, so an ended session leaves nothing behind; without it, every request would leave a key.
    /// </summary>
    public static ISiloBuilder AddSpaRedisStorage(this ISiloBuilder silo, ConfigurationOptions redis) =>
        silo.AddSpaRedisStorage(SessionStorage, redis).AddSpaRedisStorage(PubSubStorage, redis);

    /// <summary>The grain storage <paramref name="name"/> in Redis, deleting a cleared state's key.</summary>
    public static ISiloBuilder AddSpaRedisStorage(this ISiloBuilder silo, string name, ConfigurationOptions redis)
    {
        silo.Services.AddStoredStateFormat(name);
        return silo.AddRedisGrainStorage(name, storage => (storage.ConfigurationOptions, storage.DeleteStateOnClear) = (redis, true));
    }

    /// <summary>The grain storage <paramref name="name"/> in the cluster's memory, which forgets cleared entries (<see cref="MemoryStateStorage"/>).</summary>
    public static ISiloBuilder AddSpaMemoryStorage(this ISiloBuilder silo, string name)
    {
        silo.Services.AddStoredStateFormat(name).AddGrainMetrics().AddKeyedSingleton<IGrainStorage>(name, (services, _) => MemoryStateStorage.Create(services, name));
        return silo;
    }

    /// <summary>
    /// The grain storage <paramref name="name"/> writes the format of <see cref="SpaSessionOptions.StateFormat"/> and reads
    /// Orleans' binary format or the JSON of the silo's default serializer (<see cref="StoredStateSerializer"/>). JSON is
    /// read into new objects: Json.NET's default fills a property's existing object instead, and a property whose
    /// default is a shared instance (<see cref="EdgeTotals.None"/>, <see cref="SamplingSettings.Greedy"/>) would then be
    /// overwritten for every reader in the process.
    /// </summary>
    private static IServiceCollection AddStoredStateFormat(this IServiceCollection services, string name) =>
        services.Configure<OrleansJsonSerializerOptions>(json => json.JsonSerializerSettings.ObjectCreationHandling = ObjectCreationHandling.Replace)
            .AddKeyedSingleton<IGrainStorageSerializer>(name, (provider, _) =>
                new StoredStateSerializer(provider.GetRequiredService<Serializer>(), provider.GetRequiredService<IGrainStorageSerializer>(),
                    provider.GetRequiredService<IOptions<SpaSessionOptions>>().Value.StateFormat));

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
