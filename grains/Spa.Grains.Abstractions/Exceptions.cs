namespace Spa.Grains.Abstractions;

/// <summary>The device is not registered.</summary>
[GenerateSerializer, Alias("spa.DeviceNotFoundException")]
public sealed class DeviceNotFoundException : Exception
{
    public DeviceNotFoundException(string message) : base(message) { }
}

/// <summary>The device belongs to another user, or the secret is wrong.</summary>
[GenerateSerializer, Alias("spa.DeviceAccessDeniedException")]
public sealed class DeviceAccessDeniedException : Exception
{
    public DeviceAccessDeniedException(string message) : base(message) { }
}

/// <summary>The device is offline, failed or did not answer in time (a session with fallback 'fail' reports it as is).</summary>
[GenerateSerializer, Alias("spa.EdgeUnavailableException")]
public sealed class EdgeUnavailableException : Exception
{
    public EdgeUnavailableException(string message) : base(message) { }
}

/// <summary>The session was deleted while a call still read its tokens: the generation did not finish, it was cancelled.</summary>
[GenerateSerializer, Alias("spa.SessionEndedException")]
public sealed class SessionEndedException : Exception
{
    public SessionEndedException(string message) : base(message) { }
}

/// <summary>A request's setting that cannot run; <see cref="Setting"/> names it as the HTTP API does ("spa.device_id").</summary>
[GenerateSerializer, Alias("spa.InvalidSettingException")]
public sealed class InvalidSettingException : ArgumentException
{
    public InvalidSettingException(string message, string setting) : base(message) => Setting = setting;

    [Id(0)] public string Setting { get; private set; }
}
