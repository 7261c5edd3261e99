using System.Runtime;

namespace Spa.Model;

/// <summary>
/// Runs a piece of TorchSharp work during which no garbage collection can start. TorchSharp 0.107 turns numbers into
/// Scalars implicitly (its own <c>add_(tensor)</c> passes alpha = 1 that way) and leaves them to the finalizer; a
/// collection that runs while the native call reading such a Scalar is in flight can free it under the call, which
/// fails with "Unknown scalar type" or a wrong value. Training steps hit this every few hundred steps. Inside a no-GC
/// region nothing is finalized, and the Scalars are collected after the calls that use them have returned.
/// </summary>
public static class NoCollection
{
    /// <summary>Managed allocation allowed inside one region; a step that allocates more just ends the region early.</summary>
    public const long Budget = 64L << 20;

    public static T Run<T>(Func<T> work)
    {
        bool started = GCSettings.LatencyMode != GCLatencyMode.NoGCRegion && GC.TryStartNoGCRegion(Budget);
        try
        {
            return work();
        }
        finally
        {
            if (started && GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
        }
    }
}
