using System.Net;
using Orleans.Clustering.Redis;
using Orleans.Configuration;
using Orleans.Persistence;
using Spa.Grains;
using StackExchange.Redis;

namespace Spa.Silo;

/// <summary>
/// The several-process cluster: silos find each other through a membership table in Redis and keep grain state
/// there (sessions, and the stream subscriptions of "PubSubStore"), so a session outlives the silo that ran it, and
/// its reminders (a released session's retention). In a pod, Orleans' Kubernetes hosting adds what the pod knows: the
/// silo's name and address, and the other silos' pods.
/// <para>
/// Membership decides how soon a dead silo's grains come back elsewhere: a silo is declared dead after
/// <see cref="ClusterMembershipOptions.NumMissedProbesLimit"/> probes that go unanswered for
/// <see cref="ClusterMembershipOptions.ProbeTimeout"/> each. Defaults here: 3 probes of 2 s (Orleans': 3 of 5 s), so a
/// generation on a dead silo waits some 6 to 10 s; the section <see cref="MembershipSection"/> overrides any of
/// Orleans' <see cref="ClusterMembershipOptions"/>.
/// </para>
/// <para>
/// One silo's direct probes decide (<see cref="ClusterMembershipOptions.NumVotesForDeathDeclaration"/> 1 and
/// <see cref="ClusterMembershipOptions.EnableIndirectProbes"/> off; Orleans' defaults are 2 and on): with 2 votes, a
/// lone survivor of three never gathers the votes for its two dead peers; with indirect probes, it asks one dead peer
/// to probe the other, never gets an answer, and never votes. Either way the cluster stops serving until the dead come
/// back. The cost: a silo that still reaches Redis but not a healthy peer can evict that peer alone (the evicted silo
/// stops, and its pod or service manager starts it again). Deployments that prefer waiting to such evictions set both
/// back under <see cref="MembershipSection"/>.
/// </para>
/// </summary>
internal static class RedisCluster
{
    public const string MembershipSection = "Spa:Cluster:Membership";

    /// <summary>Connects to <see cref="SiloHostOptions.Redis"/>, or throws with a one-line reason within the connect timeout.</summary>
    public static ConnectionMultiplexer Connect(SiloHostOptions options)
    {
        var configuration = options.RedisConfiguration();
        // Fail at start on a server that does not answer (StackExchange.Redis would otherwise keep retrying in the
        // background while the silo waits for its membership table).
        configuration.AbortOnConnectFail = true;
        try
        {
            return ConnectionMultiplexer.Connect(configuration);
        }
        catch (RedisConnectionException e)
        {
            throw new InvalidOperationException($"the Redis server {options.Redis} does not answer ({e.FailureType}): start it or fix --redis");
        }
    }

    /// <summary>
    /// Redis clustering and storage over <paramref name="redis"/>, which the container then owns: resolved from it by
    /// the providers' options (and so disposed with the host), and shared, so that no provider closes it.
    /// </summary>
    public static void Configure(ISiloBuilder silo, SiloHostOptions options, ConnectionMultiplexer redis, IConfiguration configuration)
    {
        var redisConfiguration = options.RedisConfiguration();
        silo.Services.AddSingleton<IConnectionMultiplexer>(_ => redis);
        silo.Configure<ClusterOptions>(cluster =>
        {
            cluster.ClusterId = options.ClusterId!;
            cluster.ServiceId = options.ServiceId!;
        });
        if (options.InKubernetes)
        {
            // Orleans reads the pod from the same downward API variables that Validate checked.
            silo.UseKubernetesHosting();
            // The pod's IP is advertised and every address of the pod listens (the Services reach it through its IP).
            silo.ConfigureEndpoints(IPAddress.Parse(options.PodIP!), options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: true);
        }
        else
        {
            // Bound to the advertised address only: silos of one host then differ by port alone.
            silo.ConfigureEndpoints(IPAddress.Parse(options.Advertise ?? IPAddress.Loopback.ToString()), options.SiloPort, options.GatewayPort,
                listenOnAnyHostAddress: false);
        }
        silo.UseRedisClustering(clustering => clustering.ConfigurationOptions = redisConfiguration);
        silo.Services.AddOptions<ClusterMembershipOptions>()
            .Configure(membership => (membership.ProbeTimeout, membership.NumMissedProbesLimit, membership.NumVotesForDeathDeclaration, membership.EnableIndirectProbes) =
                (TimeSpan.FromSeconds(2), 3, 1, false))
            .Bind(configuration.GetSection(MembershipSection));
        silo.Services.AddOptions<RedisClusteringOptions>().Configure<IConnectionMultiplexer>((clustering, shared) =>
            clustering.CreateMultiplexer = _ => Task.FromResult((shared, IsShared: true)));
        silo.AddSpaRedisStorage(redisConfiguration);
        foreach (var name in new[] { SpaGrainsHosting.SessionStorage, SpaGrainsHosting.PubSubStorage })
            silo.Services.AddOptions<RedisStorageOptions>(name).Configure<IConnectionMultiplexer>((storage, shared) =>
                storage.CreateMultiplexer = _ => Task.FromResult((shared, IsShared: true)));
        silo.UseRedisReminderService(reminders => reminders.ConfigurationOptions = redisConfiguration);
        silo.Services.AddOptions<RedisReminderTableOptions>().Configure<IConnectionMultiplexer>((reminders, shared) =>
            reminders.CreateMultiplexer = _ => Task.FromResult((shared, IsShared: true)));
    }
}
