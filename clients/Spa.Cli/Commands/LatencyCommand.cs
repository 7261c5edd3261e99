using System.CommandLine;
using Spa.CommandLine;
using Spa.Model;
using Spa.Model.Checkpoints;
using Spa.Model.Latency;
using Spa.Model.Plugins;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa latency</c>: the analytic latency model (docs/method.md) for every placement of the per-user parameters,
/// on given device and link profiles: our Table 2. With <c>--project llama-7b</c> it uses LLaMA-7B's dimensions and
/// says so.
/// </summary>
public static class LatencyCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Model whose dimensions to use (default: as for generate)." };
        var project = new Option<string?>("--project") { Description = "Project onto a model that is not loaded: llama-7b." };
        var spaM = new Option<double>("--spa-m") { Description = "Measured round trips per token of spa (the gate's rate).", DefaultValueFactory = _ => 0.24 };
        var cloudMs = new Option<double?>("--cloud-ms") { Description = "Measured cloud time per token in ms (default: the analytic time on --cloud)." };
        var cloud = new Option<string>("--cloud") { Description = "Cloud profile for the analytic cloud time: a100 or cpu.", DefaultValueFactory = _ => "a100" };
        var devices = new Option<string>("--devices") { Description = "Device profiles: phone, laptop, server.", DefaultValueFactory = _ => "phone" };
        var links = new Option<string>("--links") { Description = "Link profiles: 4g, 5g, wifi, lan.", DefaultValueFactory = _ => "4g,5g,wifi" };
        var placement = new Option<string>("--placement") { Description = "Tap placement: edge or cloud.", DefaultValueFactory = _ => "edge" };
        var activation = new Option<string>("--activation") { Description = "fp32, fp16 or int8.", DefaultValueFactory = _ => "fp16" };
        var context = new Option<int>("--context") { Description = "Mean context length while generating.", DefaultValueFactory = _ => 256 };

        var command = new Command("latency", "Predicted per-token latency of every plugin placement (cloud, edge, network) on device and link profiles.");
        foreach (var option in new Option[] { model, project, spaM, cloudMs, cloud, devices, links, placement, activation, context })
            command.Options.Add(option);
        command.SetGuardedAction((result, _) =>
        {
            var projected = result.GetValue(project);
            LlamaConfig config;
            string label;
            if (projected is not null)
            {
                if (!projected.Equals("llama-7b", StringComparison.OrdinalIgnoreCase)) throw new UsageException($"--project knows llama-7b, not '{projected}'");
                config = ModelDimensions.Llama7B;
                label = "LLaMA-7B dimensions (a projection: no such model was run)";
            }
            else
            {
                var arguments = new ModelArguments();
                var path = result.GetValue(model) ?? arguments.ResolvePath(result);
                using var checkpoint = CheckpointLoader.Load(path);
                config = checkpoint.Config;
                label = $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(path))} dimensions";
            }
            double m = result.GetValue(spaM);
            if (m is < 0 or > 1) throw new UsageException($"--spa-m must be in [0, 1], got {m}");
            int contextTokens = result.GetValue(context);
            var cloudProfile = Profiles.Cloud(result.GetValue(cloud)!);
            double cloudSeconds = result.GetValue(cloudMs) is { } ms ? ms / 1e3 : LatencyModel.CloudSecondsPerToken(config, cloudProfile, contextTokens);
            LatencyScenario[] scenarios =
            [
                new(PluginKind.Ladder, CombinationMode.Base),
                new(PluginKind.Lora, CombinationMode.Parallel),
                new(PluginKind.Adapter, CombinationMode.Parallel),
                new(PluginKind.Lst, CombinationMode.Side),
                new(PluginKind.Ladder, CombinationMode.Side),
                new(PluginKind.Ladder, CombinationMode.Parallel),
                new(PluginKind.Ladder, CombinationMode.Spa, m),
            ];
            var rows = LatencyTable.Build(config, PluginDimensions.For(config), PluginNames.ParsePlacement(result.GetValue(placement)!),
                PluginNames.ParseActivation(result.GetValue(activation)!), contextTokens, cloudSeconds, scenarios,
                Split(result.GetValue(devices)!).Select(Profiles.Device), Split(result.GetValue(links)!).Select(Profiles.Link));
            Console.Out.WriteLine($"Per-token latency, {label}; cloud {cloudSeconds * 1e3:F3} ms per token " +
                (result.GetValue(cloudMs) is null ? $"(analytic, {cloudProfile.Name})" : "(measured)") + $", spa at M = {m}.");
            Console.Out.WriteLine();
            Console.Out.Write(LatencyTable.ToMarkdown(rows));
            return Task.FromResult(0);
        });
        return command;
    }

    private static string[] Split(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
