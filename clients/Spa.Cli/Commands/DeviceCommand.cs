using System.CommandLine;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Spa.CommandLine;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa device register</c>: registers a device for the API key's user through a silo's HTTP API and prints its
/// secret (generated unless given), which the device's <c>spa-device</c> process then presents. With
/// <c>--simulate DIR</c> the device is simulated by the cluster from the plugin in DIR on the silo's host.
/// </summary>
public static class DeviceCommand
{
    public static Command Create()
    {
        var device = new Command("device", "Edge devices of a running cluster.");
        device.Subcommands.Add(Register());
        return device;
    }

    private static Command Register()
    {
        var host = new HostArguments("The silo's HTTP address; the device belongs to the API key's user.", "http://127.0.0.1:8080");
        var id = new Option<string>("--device-id") { Description = "The device's id: 1 to 64 letters, digits, '.', '_' or '-'.", Required = true };
        var secret = new Option<string?>("--secret") { Description = "The device's secret, at least 16 characters (default: one is generated and printed once)." };
        var simulate = new Option<string?>("--simulate") { Description = "Simulate the device in the cluster with the plugin in this directory (on the silo's host)." };
        var profile = new Option<string?>("--profile") { Description = "A simulated device's profile: local, phone-4g, phone-5g or laptop-wifi (default local)." };

        var command = new Command("register", "Register a device for your user and print its secret.");
        host.AddTo(command);
        foreach (var option in new Option[] { id, secret, simulate, profile }) command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            if (result.GetValue(profile) is not null && result.GetValue(simulate) is null)
                throw new UsageException("--profile describes a simulated device: give --simulate DIR too");
            var body = new JsonObject { ["device_id"] = result.GetValue(id) };
            if (result.GetValue(secret) is { } s) body["secret"] = s;
            if (result.GetValue(simulate) is { } directory)
                body["simulated"] = new JsonObject { ["plugin_dir"] = Path.GetFullPath(directory), ["profile"] = result.GetValue(profile) ?? "local" };

            using var http = host.CreateClient(result, TimeSpan.FromSeconds(60));
            using var response = await http.PostAsJsonAsync("/v1/devices", body, cancellation);
            var text = await response.Content.ReadAsStringAsync(cancellation);
            var answer = JsonNode.Parse(text);
            if (!response.IsSuccessStatusCode)
                throw new InvalidOperationException($"the cluster refused ({(int)response.StatusCode}): {answer?["error"]?["message"]?.GetValue<string>() ?? text}");
            Console.WriteLine($"device {answer!["id"]} registered for user {answer["owner"]} ({answer["state"]})");
            if (answer["secret"]?.GetValue<string>() is { } generated)
                Console.WriteLine($"secret: {generated}   (shown once: give it to spa-device with --secret or SPA_DEVICE_SECRET)");
            return 0;
        });
        return command;
    }
}
