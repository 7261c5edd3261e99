using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Trace;
using Spa.Grains;

namespace Spa.Silo;

/// <summary>Where traces go. Bound from the configuration section <see cref="Section"/>.</summary>
public sealed class TelemetryOptions
{
    public const string Section = "Spa:Telemetry";

    /// <summary>
    /// The base URL of an OTLP receiver taking http/protobuf (e.g. <c>http://collector:4318</c>); traces are posted to
    /// its <c>/v1/traces</c>. Without it, the standard <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (with
    /// <c>OTEL_EXPORTER_OTLP_PROTOCOL</c>, gRPC unless told otherwise) is used when set; with neither nothing is traced.
    /// </summary>
    public string? OtlpEndpoint { get; set; }
}

/// <summary>Traces over OTLP when a receiver is configured: the silo's own activities, Orleans' grain calls and ASP.NET Core's requests.</summary>
internal static class Tracing
{
    private const string StandardEndpoint = "OTEL_EXPORTER_OTLP_ENDPOINT";

    public static void AddTracing(this IOpenTelemetryBuilder telemetry, IConfiguration configuration)
    {
        var options = configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        Uri? endpoint = null;
        if (!string.IsNullOrWhiteSpace(options.OtlpEndpoint))
        {
            if (!Uri.TryCreate(options.OtlpEndpoint, UriKind.Absolute, out var root) || root.Scheme is not ("http" or "https"))
                throw new ArgumentException($"{TelemetryOptions.Section}:OtlpEndpoint must be an http(s) URL, got '{options.OtlpEndpoint}'");
            endpoint = new Uri(root, root.AbsolutePath.TrimEnd('/') + "/v1/traces");
        }
        else if (string.IsNullOrWhiteSpace(configuration[StandardEndpoint]) && string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(StandardEndpoint)))
            return; // nothing listens: the activity sources stay without listeners and cost nothing

        telemetry.WithTracing(tracing =>
        {
            tracing.AddSource(SpaTelemetry.ActivitySourceName, "Microsoft.Orleans.Application", "Microsoft.AspNetCore");
            if (endpoint is null) tracing.AddOtlpExporter(); // reads the standard OTEL_EXPORTER_OTLP_* variables
            else tracing.AddOtlpExporter(o =>
            {
                o.Endpoint = endpoint;
                o.Protocol = OtlpExportProtocol.HttpProtobuf;
            });
        });
    }
}
