using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Spa.Edge;
using Spa.Grains.Abstractions;

namespace Spa.Device;

/// <summary>
/// The device's runtime: an Orleans client of the cluster over its own TCP connection to a gateway. It proves its
/// secret, learns which base the cluster serves, loads the private plugin for it (from this machine's disk, which no
/// silo ever reads), registers <see cref="PluginEdge"/> as its observer and renews the connection until stopped; on
/// the way out it disconnects, so that sessions fall back at once instead of waiting for a timeout.
/// </summary>
public sealed class DeviceRuntime(DeviceOptions options, TextWriter log)
{
    public async Task<int> RunAsync(CancellationToken stop)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(options.Gateways.ToArray());
            client.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = (options.ClusterId, options.ServiceId));
            // The cluster's calls into this device carry their trace, as calls between silos do.
            client.AddActivityPropagation();
            if (options.TlsTrust is { } trusted) client.UseTlsTrusting(trusted);
        });
        using var host = builder.Build();
        using (var connecting = CancellationTokenSource.CreateLinkedTokenSource(stop))
        {
            connecting.CancelAfter(options.ConnectTimeout);
            try
            {
                await host.StartAsync(connecting.Token);
            }
            catch (Exception e) when (!stop.IsCancellationRequested)
            {
                throw new InvalidOperationException($"could not reach the cluster at {string.Join(", ", options.Gateways)} ({e.Message})", e);
            }
        }
        // SIGTERM reaches the host's console lifetime, which asks the application to stop: that ends the loop below too.
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(stop, host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
        stop = stopping.Token;
        var client = host.Services.GetRequiredService<IClusterClient>();
        var device = client.GetGrain<IEdgeDeviceGrain>(options.DeviceId);
        var facts = await device.Hello(options.Secret);
        using var edge = PluginEdge.Load(options.PluginDirectory, facts);
        edge.Profile = options.Profile;
        var card = edge.Describe();
        var observer = client.CreateObjectReference<IEdgeDeviceObserver>(edge);
        var info = await device.Connect(options.Secret, observer, card);
        log.WriteLine($"spa-device: device {options.DeviceId} of {info.Owner} connected to {string.Join(", ", options.Gateways)}: {WireNames.Of(card.Kind)} plugin for {facts.Model}{(options.TlsTrust is null ? "" : " over TLS")}{(options.Profile == EdgeProfiles.Local ? "" : $" as a {options.Profile.Name} device")}; answering until stopped");
        log.Flush();
        try
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(options.Renew, stop);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                await device.Connect(options.Secret, observer, card);
            }
            await device.Disconnect(options.Secret);
        }
        finally
        {
            client.DeleteObjectReference<IEdgeDeviceObserver>(observer);
            await host.StopAsync(CancellationToken.None);
        }
        log.WriteLine($"spa-device: device {options.DeviceId} disconnected");
        return 0;
    }
}
