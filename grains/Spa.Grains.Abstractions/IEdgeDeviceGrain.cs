namespace Spa.Grains;

/// <summary>
/// A user's edge device, keyed by the device id. In this slice the device is simulated: its plugin (a ladder side
/// network) runs in the silo that activates the grain, loaded once from the registered plugin directory; a real
/// spa-device process answering over its own connection is future work. Every <see cref="SideStep"/> is one round trip.
/// </summary>
[Alias("spa.IEdgeDeviceGrain")]
public interface IEdgeDeviceGrain : IGrainWithStringKey
{
    /// <summary>Registers a simulated device of <paramref name="owner"/> holding the plugin in <paramref name="pluginDirectory"/>.</summary>
    [Alias("Register")]
    ValueTask Register(string owner, string pluginDirectory);

    /// <summary>The registration; throws when the device is not registered.</summary>
    [Alias("Describe")]
    ValueTask<EdgeDeviceInfo> Describe();

    /// <summary>Runs the side network on the taps of one position and returns its output.</summary>
    [Alias("SideStep")]
    ValueTask<EdgeSideStepResult> SideStep(EdgeSideStepRequest request);

    [Alias("GetStats")]
    ValueTask<EdgeDeviceStats> GetStats();
}
