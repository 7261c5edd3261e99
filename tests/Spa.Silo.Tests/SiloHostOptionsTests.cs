using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Spa.Testing;

namespace Spa.Silo.Tests;

public sealed class SiloHostOptionsTests
{
    private static SiloHostOptions Valid() => new() { Model = SharedData.Stories260K };

    private static IConfiguration Config(params (string Key, string Value)[] values) => new ConfigurationBuilder()
        .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value)))
        .Build();

    /// <summary>The silo program's and spa serve's command line, read as a user types it.</summary>
    internal static ParseResult ParseSiloArguments(SiloArguments arguments, params string[] args) => arguments.AddTo(new RootCommand()).Parse(args);

    internal static SiloHostOptions ReadSiloArguments(params string[] args)
    {
        var arguments = new SiloArguments();
        var parsed = ParseSiloArguments(arguments, args);
        Assert.Empty(parsed.Errors);
        return arguments.Read(parsed);
    }

    [Fact]
    public void SiloArgumentsBecomeOptions()
    {
        var options = ReadSiloArguments("--http", "127.0.0.1:9000", "--model=m", "--shards", "2", "--api-key", "k",
            "--redis", "127.0.0.1:6379", "--silo-port", "11112", "--gateway-port=30001", "--advertise", "10.0.0.5", "--hosting", "kubernetes");
        Assert.Equal(("127.0.0.1:9000", "m", 2, "k"), (options.Http, options.Model, options.Shards, options.ApiKey));
        Assert.Equal(("127.0.0.1:6379", 11112, 30001, "10.0.0.5"), (options.Redis, options.SiloPort, options.GatewayPort, options.Advertise));
        Assert.True(options.InKubernetes);
        Assert.Equal("http://127.0.0.1:9000", SiloHostOptions.ToUrl(options.Http!));
        var defaults = ReadSiloArguments();
        Assert.Equal((null, null, SiloHostOptions.DefaultSiloPort, SiloHostOptions.DefaultGatewayPort), (defaults.Model, defaults.Shards, defaults.SiloPort, defaults.GatewayPort));
        // Values are the business of Validate, shared by every way of building the options.
        Assert.Equal(0, ReadSiloArguments("--shards", "0").Shards);
    }

    [Theory]
    [InlineData("'--frobnicate'", "--frobnicate", "1")]
    [InlineData("'--model'", "--model")]
    [InlineData("'x'", "--silo-port", "x")]
    public void WordsThatAreNotSiloArgumentsAreParseErrors(string named, params string[] args)
    {
        var parsed = ParseSiloArguments(new SiloArguments(), args);
        Assert.Contains(parsed.Errors, e => e.Message.Contains(named, StringComparison.Ordinal));
    }

    [Fact]
    public void DefaultsAreValid()
    {
        Valid().Validate();
        new SiloHostOptions { Model = SharedData.Stories260K, Http = "127.0.0.1:0", Redis = "127.0.0.1:6379", Advertise = "127.0.0.1" }.Validate();
        new SiloHostOptions { Model = SharedData.Stories260K, Http = "http://0.0.0.0:8080", Redis = "localhost:6379,password=secret" }.Validate();
    }

    [Theory]
    [InlineData("--shards (Spa:Model:Shards) must be positive, got 0", "Shards", "0")]
    [InlineData("--silo-port must be a port number from 1 to 65535, got 0", "SiloPort", "0")]
    [InlineData("--silo-port must be a port number from 1 to 65535, got 65536", "SiloPort", "65536")]
    [InlineData("--gateway-port must be a port number from 1 to 65535, got -1", "GatewayPort", "-1")]
    [InlineData("--silo-port and --gateway-port must differ, both are 30000", "SiloPort", "30000")]
    [InlineData("--http must be HOST:PORT", "Http", "localhost")]
    [InlineData("--http must be HOST:PORT", "Http", "localhost:99999")]
    [InlineData("--redis (Spa:Cluster:Redis) must be HOST:PORT", "Redis", "127.0.0.1:0")]
    [InlineData("--redis (Spa:Cluster:Redis) must be HOST:PORT", "Redis", "")]
    [InlineData("--advertise (Spa:Cluster:Advertise) needs --redis", "Advertise", "127.0.0.1")]
    [InlineData("the model /nonexistent/model.bin does not exist", "Model", "/nonexistent/model.bin")]
    public void BadValuesAreRefusedWithAReason(string reason, string property, string value)
    {
        var options = Valid();
        var target = typeof(SiloHostOptions).GetProperty(property)!;
        var type = Nullable.GetUnderlyingType(target.PropertyType) ?? target.PropertyType;
        target.SetValue(options, type == typeof(int) ? int.Parse(value) : value);
        var error = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains(reason, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void AnAdvertisedAddressMustBeAnIpAddress()
    {
        var options = Valid();
        (options.Redis, options.Advertise) = ("127.0.0.1:6379", "silo-1.example");
        Assert.Contains("--advertise (Spa:Cluster:Advertise) must be an IP address", Assert.Throws<ArgumentException>(options.Validate).Message);
    }

    [Fact]
    public void TheCommandLineOverridesTheConfiguration()
    {
        var config = Config(("Spa:Cluster:Redis", "redis-1:6379"), ("Spa:Cluster:ClusterId", "blue"), ("Spa:Model:Shards", "3"),
            ("Spa:Model:ModelPath", SharedData.Stories260K));

        var fromConfig = new SiloHostOptions().WithConfiguration(config);
        Assert.Equal(("redis-1:6379", "blue", "spa", 3, SharedData.Stories260K),
            (fromConfig.Redis, fromConfig.ClusterId, fromConfig.ServiceId, fromConfig.Shards, fromConfig.Model));
        fromConfig.Validate();

        var given = new SiloHostOptions { Redis = "redis-2:6380", Shards = 2, Model = "m" }.WithConfiguration(config);
        Assert.Equal(("redis-2:6380", 2, "m"), (given.Redis, given.Shards, given.Model));

        var alone = new SiloHostOptions().WithConfiguration(Config());
        Assert.Equal((null, "spa", "spa", 1), (alone.Redis, alone.ClusterId, alone.ServiceId, alone.Shards));
    }

    [Fact]
    public void BadConfigurationIsRefusedLikeABadCommandLine()
    {
        var options = new SiloHostOptions().WithConfiguration(Config(("Spa:Model:ModelPath", SharedData.Stories260K), ("Spa:Model:Shards", "-2")));
        Assert.Contains("--shards (Spa:Model:Shards) must be positive, got -2", Assert.Throws<ArgumentException>(options.Validate).Message);
        options = new SiloHostOptions().WithConfiguration(Config(("Spa:Model:ModelPath", SharedData.Stories260K), ("Spa:Cluster:ClusterId", " ")));
        Assert.Contains("Spa:Cluster:ClusterId must not be empty", Assert.Throws<ArgumentException>(options.Validate).Message);
    }

    /// <summary>What a silo pod of k8s/ sees: its cluster settings and the downward API's variables.</summary>
    private static Dictionary<string, string> PodEnvironment() => new()
    {
        ["Spa:Model:ModelPath"] = SharedData.Stories260K,
        ["Spa:Cluster:Hosting"] = "kubernetes",
        ["Spa:Cluster:Redis"] = "spa-redis:6379",
        ["Spa:Cluster:ClusterId"] = "not-the-label",
        ["POD_NAME"] = "spa-silo-1",
        ["POD_NAMESPACE"] = "spa",
        ["POD_IP"] = "10.244.1.7",
        ["ORLEANS_CLUSTER_ID"] = "blue",
        ["ORLEANS_SERVICE_ID"] = "spa-service",
    };

    private static SiloHostOptions InPod(Dictionary<string, string> environment) =>
        new SiloHostOptions().WithConfiguration(Config([.. environment.Select(e => (e.Key, e.Value))]));

    [Fact]
    public void KubernetesHostingTakesThePodAndTheIdsFromTheDownwardApi()
    {
        var options = InPod(PodEnvironment());
        options.Validate();
        Assert.True(options.InKubernetes);
        Assert.Equal(("spa-silo-1", "spa", "10.244.1.7"), (options.PodName, options.PodNamespace, options.PodIP));
        // The ids are the pod's labels, by which Orleans finds the silos' pods; Spa:Cluster:ClusterId does not apply.
        Assert.Equal(("blue", "spa-service"), (options.ClusterId, options.ServiceId));
        Assert.Equal("spa-redis:6379", options.Redis);

        var onHost = new SiloHostOptions().WithConfiguration(Config(("Spa:Cluster:Hosting", "host"), ("POD_NAME", "spa-silo-1"), ("ORLEANS_CLUSTER_ID", "blue")));
        Assert.False(onHost.InKubernetes);
        Assert.Equal((null, "spa"), (onHost.PodName, onHost.ClusterId));
    }

    [Theory]
    [InlineData("Spa:Cluster:Redis", null, "--hosting kubernetes (Spa:Cluster:Hosting) needs --redis (Spa:Cluster:Redis)")]
    [InlineData("Spa:Cluster:Advertise", "10.0.0.5", "--advertise (Spa:Cluster:Advertise) does not apply under --hosting kubernetes")]
    [InlineData("POD_NAME", null, "needs the environment variable POD_NAME from the downward API (fieldRef metadata.name)")]
    [InlineData("POD_NAMESPACE", "", "needs the environment variable POD_NAMESPACE from the downward API (fieldRef metadata.namespace)")]
    [InlineData("POD_IP", null, "needs the environment variable POD_IP from the downward API (fieldRef status.podIP)")]
    [InlineData("POD_IP", "spa-silo-1.spa", "POD_IP must be an IP address, got 'spa-silo-1.spa'")]
    [InlineData("ORLEANS_CLUSTER_ID", null, "needs the environment variable ORLEANS_CLUSTER_ID from the downward API (fieldRef metadata.labels['orleans/clusterId'])")]
    [InlineData("ORLEANS_SERVICE_ID", " ", "needs the environment variable ORLEANS_SERVICE_ID from the downward API (fieldRef metadata.labels['orleans/serviceId'])")]
    [InlineData("Spa:Cluster:Hosting", "docker", "--hosting (Spa:Cluster:Hosting) must be host or kubernetes, got 'docker'")]
    public void AnIncompletePodIsRefusedWithAReason(string key, string? value, string reason)
    {
        var environment = PodEnvironment();
        if (value is null) environment.Remove(key);
        else environment[key] = value;
        var error = Assert.Throws<ArgumentException>(InPod(environment).Validate);
        Assert.Contains(reason, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }
}
