using static TorchSharp.torch;

namespace Spa.Grains.Placement;

/// <summary>
/// The accelerators a silo offers to shard grains. Bound from the configuration section <see cref="Section"/>. They
/// only steer placement: the device a shard computes on is still <see cref="SpaModelOptions.Device"/>.
/// </summary>
public sealed class AcceleratorOptions
{
    public const string Section = "Spa:Accelerators";

    /// <summary>
    /// Comma-separated torch devices ("cuda:0,cuda:1", "cpu"), or "none" for a silo that should host no shard while
    /// another silo offers an accelerator. Empty: one "cuda:N" for each GPU torch sees, else "cpu".
    /// </summary>
    public string Devices { get; set; } = "";

    /// <summary>
    /// How long placement waits for the metadata of a silo to reach the local silo's cache (it arrives shortly after the
    /// silo joins) before it counts that silo as offering nothing.
    /// </summary>
    public TimeSpan MetadataTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The accelerators this silo advertises, as <see cref="AcceleratorMetadata.Parse"/> orders them.</summary>
    public IReadOnlyList<string> Advertised()
    {
        if (string.IsNullOrWhiteSpace(Devices))
            return cuda.is_available() ? [.. Enumerable.Range(0, cuda.device_count()).Select(i => $"cuda:{i}")] : [AcceleratorMetadata.Cpu];
        try
        {
            return AcceleratorMetadata.Parse(Devices);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{Section}:Devices: {e.Message}", e);
        }
    }
}
