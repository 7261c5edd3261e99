using System.Net;
using System.Security.Cryptography.X509Certificates;
using Spa.Grains.Abstractions;

namespace Spa.Device;

/// <summary>
/// What spa-device is told on its command line. <see cref="TlsTrust"/>: connect over TLS, trusting a gateway whose
/// certificate chains to these; null: plain TCP.
/// </summary>
public sealed record DeviceOptions(
    IReadOnlyList<IPEndPoint> Gateways,
    string DeviceId,
    string Secret,
    string PluginDirectory,
    string ClusterId,
    string ServiceId,
    TimeSpan Renew,
    TimeSpan ConnectTimeout,
    EdgeProfile Profile,
    X509Certificate2Collection? TlsTrust);
