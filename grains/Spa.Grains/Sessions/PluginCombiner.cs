using System.Diagnostics;
using Spa.Edge;
using Spa.Grains.Abstractions;
using Spa.Model.Plugins;

namespace Spa.Grains.Sessions;

/// <summary>
/// A session's plugin on its user's device, in a ladder mode (side, parallel, switch, spa): the shards return the taps
/// of the last position and n, the final norm's output; the gate, which the cloud holds (the device handed over its
/// weights), decides from n whether the token goes to the device (switch, spa; always in side and parallel). A token
/// that goes costs one call to the device, which returns out; the logits are W_lm out (side, switch) or W_lm (n + out)
/// (parallel, spa). When the device is unavailable the token is the base's, and the step's edge counter is marked
/// degraded: the session's fallback policy decides what follows.
/// </summary>
public sealed class PluginCombiner(string sessionId, string model, PluginChoice plugin, IEdgeDeviceGrain device, ModelHost host, GrainMetrics metrics)
{
    private CloudGate? _gate; // null until the device handed its gate over (it may be offline at the start, or the session re-activated)
    private IGatePolicy? _policy;

    /// <summary>
    /// Checks that the device is the user's and holds a plugin for the model and the mode, and takes its gate over
    /// (switch, spa). A device that cannot answer now ends the start with <see cref="EdgeUnavailableException"/>, unless
    /// the fallback is the base: then the generation starts without its plugin (<c>WithoutPlugin</c>), and later tokens
    /// try the device again.
    /// </summary>
    public static async Task<(PluginCombiner Combiner, bool WithoutPlugin)> StartAsync(string sessionId, string model, string? user, PluginChoice plugin, IEdgeDeviceGrain device,
        ModelHost host, GrainMetrics metrics)
    {
        var info = await device.Describe();
        if (info.Owner != user) throw new DeviceAccessDeniedException($"device '{plugin.DeviceId}' belongs to another user");
        if (info.Model != model) throw new ArgumentException($"device '{plugin.DeviceId}' holds a plugin for model '{info.Model}', not '{model}'");
        var combiner = new PluginCombiner(sessionId, model, plugin, device, host, metrics);
        try
        {
            await combiner.LoadAsync();
            return (combiner, false);
        }
        catch (EdgeUnavailableException) when (plugin.Fallback == FallbackPolicy.Base)
        {
            return (combiner, true);
        }
    }

    /// <summary>Asks the device for its plugin: refuses one of the wrong kind; takes the gate over in a gated mode.</summary>
    private async Task LoadAsync()
    {
        var held = await device.GetPlugin();
        var needed = plugin.Mode.PluginNeeded();
        if (held.Kind != needed)
            throw new ArgumentException($"mode '{WireNames.Of(plugin.Mode)}' needs a {WireNames.Of(needed)} plugin, and device '{plugin.DeviceId}' holds a {WireNames.Of(held.Kind)} plugin");
        if (plugin.Mode.IsGated()) await ReplaceGate(await host.CreateGateAsync(model, held));
    }

    /// <summary>
    /// The logits of this token: the device's answer combined with n when the token goes to the edge, else the base's.
    /// Adds the round trip, or the failure, to <paramref name="usage"/>.
    /// </summary>
    public async Task<(float[] Logits, bool Asked)> CombineAsync(ChainStep step, EdgeCounter usage, Activity? trace)
    {
        var normed = step.Normed ?? throw new InvalidOperationException("the last shard returned no n");
        var baseLogits = step.Logits!;
        if (plugin.Mode.IsGated())
        {
            if (_gate is null && !await TryLoadGate(usage)) return (baseLogits, false);
            _policy ??= plugin.MBudget is { } budget ? new BudgetPolicy(budget, _gate!.Tau) : new ThresholdPolicy(plugin.Tau ?? _gate!.Tau);
            var token = step.Taps[0].Data.AsSpan(0, normed.Length).ToArray(); // h_0: the first tap row
            bool toEdge = _policy.Decide(await _gate!.ProbabilityAsync(normed, token));
            metrics.GateDecision(toEdge);
            SpaTracing.GateDecision(trace, toEdge);
            if (!toEdge) return (baseLogits, false);
        }
        var taps = Concatenate(step.Taps, normed.Length);
        var call = new EdgeCall(sessionId, EdgeCallKind.SideNetwork, 0, taps);
        long started = Stopwatch.GetTimestamp();
        EdgeAnswer answer;
        try
        {
            answer = await device.Ask(call);
        }
        catch (EdgeUnavailableException e)
        {
            usage.Fail(Stopwatch.GetElapsedTime(started).TotalMilliseconds, e.Message);
            return (baseLogits, false);
        }
        usage.Add(EdgeCallKind.SideNetwork, 0, 4L * taps.Data.Length, 4L * answer.Output.Data.Length, answer.EdgeMs, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return (await host.PluginLogitsAsync(model, plugin.Mode.ToCombination(), normed, answer.Output.Data), true);
    }

    public Task DisposeAsync() => ReplaceGate(null);

    /// <summary>A gated session that started without its device (or was re-activated) asks for the gate again.</summary>
    private async Task<bool> TryLoadGate(EdgeCounter usage)
    {
        try
        {
            await ReplaceGate(await host.CreateGateAsync(model, await device.GetPlugin()));
            return true;
        }
        catch (EdgeUnavailableException e)
        {
            usage.Degrade(e.Message);
            return false;
        }
    }

    private async Task ReplaceGate(CloudGate? gate)
    {
        var old = _gate;
        _gate = gate;
        if (old is not null) await old.DisposeAsync();
    }

    /// <summary>The taps of every shard as one block, [rows, dim]: h_0..h_L of the last position.</summary>
    private static Activations Concatenate(List<Activations> taps, int dim)
    {
        int rows = taps.Sum(t => t.Shape[0]);
        var data = new float[rows * dim];
        int at = 0;
        foreach (var t in taps)
        {
            t.Data.CopyTo(data, at);
            at += t.Data.Length;
        }
        return new Activations(data, [rows, dim]);
    }
}
