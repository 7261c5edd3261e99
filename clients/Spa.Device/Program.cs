using System.CommandLine;
using Spa.CommandLine;
using Spa.Device;
using Spa.Edge;

// spa-device: the on-device runtime. It holds the user's private plugin and answers the cluster's side steps.
var cluster = new Option<string>("--cluster") { Description = "The cluster's gateway(s), HOST:PORT[,HOST:PORT...].", Required = true };
var deviceId = new Option<string>("--device-id") { Description = "The device id registered with the cluster (spa device register).", Required = true };
var secret = new Option<string?>("--secret") { Description = "The device's secret (default: $SPA_DEVICE_SECRET)." };
var plugin = new Option<string>("--plugin") { Description = "The plugin directory (plugin.json + plugin.safetensors) on this device.", Required = true };
var clusterId = new Option<string>("--cluster-id") { Description = "The Orleans cluster id.", DefaultValueFactory = _ => "spa" };
var serviceId = new Option<string>("--service-id") { Description = "The Orleans service id.", DefaultValueFactory = _ => "spa" };
var renew = new Option<double>("--renew-seconds") { Description = "How often the connection is renewed (the cluster forgets it after Spa:Edge:ConnectionTtlSeconds, 30 by default).", DefaultValueFactory = _ => 10 };
var profile = new Option<string>("--profile")
{
    Description = $"Answer as slowly as this device and link would ({string.Join(", ", EdgeProfiles.BuiltIn.Select(p => p.Name))}): the profile's compute and network time is really waited.",
    DefaultValueFactory = _ => EdgeProfiles.Local.Name,
};
var connectTimeout = new Option<double>("--connect-timeout-seconds") { Description = "How long to keep trying to reach the cluster before giving up.", DefaultValueFactory = _ => 30 };
var tlsCa = new Option<string?>("--tls-ca") { Description = "Connect to the gateway over TLS, trusting a certificate that chains to the certificates in this PEM file (a CA, or the gateway's own self-signed certificate)." };

var root = new RootCommand("spa-device: answers a SPA cluster's side steps with the private plugin held on this device.");
foreach (var option in new Option[] { cluster, deviceId, secret, plugin, clusterId, serviceId, renew, profile, tlsCa, connectTimeout }) root.Options.Add(option);
root.SetGuardedAction(async (result, cancellation) =>
{
    var key = result.GetValue(secret) ?? Environment.GetEnvironmentVariable("SPA_DEVICE_SECRET")
        ?? throw new ArgumentException("give --secret or set SPA_DEVICE_SECRET");
    var directory = result.GetValue(plugin)!;
    if (!Directory.Exists(directory)) throw new ArgumentException($"--plugin: {directory} is not a directory");
    if (result.GetValue(renew) is not (> 0 and <= 3600)) throw new ArgumentException("--renew-seconds must be in (0, 3600]");
    if (result.GetValue(connectTimeout) is not (> 0 and <= 3600)) throw new ArgumentException("--connect-timeout-seconds must be in (0, 3600]");
    var options = new DeviceOptions(GatewayList.Parse(result.GetValue(cluster)!), result.GetValue(deviceId)!, key, directory,
        result.GetValue(clusterId)!, result.GetValue(serviceId)!, TimeSpan.FromSeconds(result.GetValue(renew)), TimeSpan.FromSeconds(result.GetValue(connectTimeout)),
        EdgeProfiles.Named(result.GetValue(profile)!), result.GetValue(tlsCa) is { } ca ? TransportCertificates.LoadTrust(ca, "--tls-ca") : null);
    return await new DeviceRuntime(options, Console.Out).RunAsync(cancellation);
});
return await CommandRunner.RunAsync(root, args);
