using System.Security.Cryptography;
using System.Text.Json;
using Spa.Edge;
using Spa.Grains.Abstractions;

namespace Spa.Silo;

/// <summary>
/// <c>POST /v1/devices</c> registers a device for the caller's user: a real one (its spa-device process connects later
/// with the secret) or a simulated one (<c>simulated.plugin_dir</c> on this host and a <c>profile</c>, built-in name or
/// figures). The secret is generated when none is given and returned once; only its hash is kept.
/// <c>GET /v1/devices/{id}</c> describes a device of the caller's own.
/// </summary>
internal sealed class DevicesEndpoint(IGrainFactory grains)
{
    private static readonly string[] Fields = ["device_id", "secret", "simulated"];

    public async Task Register(HttpContext context)
    {
        var user = (string)context.Items[SiloHost.UserItem]!;
        string id, secret;
        bool generated = false;
        SimulatedDevice? simulated;
        try
        {
            using var body = await RequestBody.ReadJsonAsync(context);
            var root = body.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("the request body must be a JSON object");
            foreach (var property in root.EnumerateObject())
                if (!Fields.Contains(property.Name)) throw ApiError.BadRequest($"{property.Name} is not a device setting: use {string.Join(", ", Fields)}", property.Name);
            id = CompletionRequest.Text(root, "device_id") ?? throw ApiError.BadRequest("device_id is required", "device_id");
            ClientInputs.CheckDeviceId(id, "device_id");
            var given = CompletionRequest.Text(root, "secret");
            if (given is not null) ClientInputs.CheckSecret(given);
            generated = given is null;
            secret = given ?? "dev-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
            simulated = CompletionRequest.Field(root, "simulated") is { } s ? Simulation(s) : null;
        }
        catch (Exception e) when (e is ApiError or InvalidSettingException or InvalidOperationException)
        {
            await (e switch
            {
                ApiError error => error,
                InvalidSettingException setting => ApiError.BadRequest(setting.Message, setting.Setting),
                _ => RequestBody.Unreadable((InvalidOperationException)e),
            }).WriteAsync(context.Response);
            return;
        }

        EdgeDeviceInfo info;
        try
        {
            info = await grains.GetGrain<IEdgeDeviceGrain>(id).Register(new DeviceRegistration(user, secret, simulated));
        }
        catch (Exception e) when (e is DeviceAccessDeniedException or ArgumentException or InvalidDataException or FileNotFoundException)
        {
            await (e is DeviceAccessDeniedException
                ? ApiError.DeviceForbidden(e.Message, "device_id")
                : ApiError.BadRequest(e.Message, "simulated")).WriteAsync(context.Response);
            return;
        }
        context.Response.StatusCode = StatusCodes.Status201Created;
        await context.Response.WriteAsJsonAsync(Describe(info, generated ? secret : null));
    }

    public async Task Get(HttpContext context, string id)
    {
        var user = (string)context.Items[SiloHost.UserItem]!;
        EdgeDeviceInfo info;
        try
        {
            // An id registration would refuse names no device, and is not worth a grain activation.
            if (!ClientInputs.IsDeviceId(id)) throw new DeviceNotFoundException($"no device '{id}': device ids are 1 to 64 letters, digits, '.', '_' or '-'");
            info = await grains.GetGrain<IEdgeDeviceGrain>(id).Describe();
        }
        catch (DeviceNotFoundException e)
        {
            await ApiError.DeviceNotFound(e.Message, "device_id").WriteAsync(context.Response);
            return;
        }
        if (info.Owner != user)
        {
            await ApiError.DeviceForbidden($"device '{id}' belongs to another user", "device_id").WriteAsync(context.Response);
            return;
        }
        await context.Response.WriteAsJsonAsync(Describe(info, null));
    }

    private static object Describe(EdgeDeviceInfo info, string? secret) => new
    {
        id = info.DeviceId,
        @object = "device",
        owner = info.Owner,
        state = WireNames.Of(info.State),
        model = info.Model,
        plugin_kind = info.PluginKind is { } kind ? WireNames.Of(kind) : null,
        profile = info.Profile is { } p
            ? new { name = p.Name, cores = p.Cores, flops_per_core = p.FlopsPerCore, rtt_ms = p.RoundTripMs, up_mbps = p.UpMbps, down_mbps = p.DownMbps }
            : null,
        secret,
    };

    /// <summary>{"plugin_dir": DIR, "profile": NAME or {"cores", "flops_per_core", "rtt_ms", "up_mbps", "down_mbps"}}.</summary>
    private static SimulatedDevice Simulation(JsonElement s)
    {
        if (s.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("simulated must be an object", "simulated");
        var directory = CompletionRequest.Text(s, "plugin_dir") ?? throw ApiError.BadRequest("simulated.plugin_dir is required: the plugin directory on the silo's host", "simulated.plugin_dir");
        EdgeProfile? profile = null;
        if (CompletionRequest.Field(s, "profile") is { } p)
        {
            try
            {
                profile = p.ValueKind switch
                {
                    JsonValueKind.String => EdgeProfiles.Named(p.GetString()!),
                    JsonValueKind.Object => EdgeProfiles.Validate(new EdgeProfile(CompletionRequest.Text(p, "name") ?? "custom",
                        (int)(CompletionRequest.Integer(p, "cores", 0, 4096) ?? 0), CompletionRequest.Number(p, "flops_per_core", 0, 1e15) ?? 0,
                        CompletionRequest.Number(p, "rtt_ms", 0, 60_000) ?? 0, CompletionRequest.Number(p, "up_mbps", 0, 1e6) ?? 0,
                        CompletionRequest.Number(p, "down_mbps", 0, 1e6) ?? 0)),
                    _ => throw ApiError.BadRequest("simulated.profile must be a profile name or an object", "simulated.profile"),
                };
            }
            catch (ArgumentException e)
            {
                throw ApiError.BadRequest(e.Message, "simulated.profile");
            }
        }
        return new SimulatedDevice(directory, profile);
    }
}
