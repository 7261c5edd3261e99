namespace Spa.Silo;

/// <summary>A request the API refuses, answered as OpenAI does: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    public object Body => new { error = new { message = Message, type = Type, param = Param, code = Code } };

    public Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        return response.WriteAsJsonAsync(Body);
    }

    public static ApiError BadRequest(string message, string? param = null) => new(StatusCodes.Status400BadRequest, message, param);

    /// <summary>A device that is not registered, named by the field <paramref name="param"/>.</summary>
    public static ApiError DeviceNotFound(string message, string param) => new(StatusCodes.Status404NotFound, message, param, "device_not_found");

    /// <summary>Another user's device, or a wrong secret, named by the field <paramref name="param"/>.</summary>
    public static ApiError DeviceForbidden(string message, string param) => new(StatusCodes.Status403Forbidden, message, param, "device_forbidden");
}
