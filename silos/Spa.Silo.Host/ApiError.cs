using System.Globalization;

namespace Spa.Silo;

/// <summary>A request the API refuses, answered as OpenAI does: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    /// <summary>When to try again, sent as <c>Retry-After</c>; null: not said.</summary>
    public int? RetryAfterSeconds { get; init; }

    public object Body => new { error = new { message = Message, type = Type, param = Param, code = Code } };

    public Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        if (RetryAfterSeconds is { } seconds) response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return response.WriteAsJsonAsync(Body);
    }

    /// <summary>
    /// The cluster could not reach the grains a request needs within the silo-loss retry period (silos died and are not
    /// yet declared dead, or too few are left): 503 with the reason and a time to try again, never a 500.
    /// </summary>
    public static ApiError ClusterUnavailable(Exception e) => new(StatusCodes.Status503ServiceUnavailable,
        $"the cluster cannot serve this request now ({e.Message}); try again", code: "cluster_unavailable", type: "server_error")
    {
        RetryAfterSeconds = 5,
    };

    public static ApiError BadRequest(string message, string? param = null) => new(StatusCodes.Status400BadRequest, message, param);

    /// <summary>A device that is not registered, named by the field <paramref name="param"/>.</summary>
    public static ApiError DeviceNotFound(string message, string param) => new(StatusCodes.Status404NotFound, message, param, "device_not_found");

    /// <summary>Another user's device, or a wrong secret, named by the field <paramref name="param"/>.</summary>
    public static ApiError DeviceForbidden(string message, string param) => new(StatusCodes.Status403Forbidden, message, param, "device_forbidden");
}
