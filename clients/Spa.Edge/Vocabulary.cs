using Contracts = Spa.Grains.Abstractions;
using Method = Spa.Model.Plugins;

namespace Spa.Edge;

/// <summary>The contracts' names for the method's concepts mapped to the model's and back, one to one.</summary>
public static class Vocabulary
{
    public static Contracts.DevicePluginKind ToContract(this Method.PluginKind kind) => kind switch
    {
        Method.PluginKind.Ladder => Contracts.DevicePluginKind.Ladder,
        Method.PluginKind.Lst => Contracts.DevicePluginKind.Lst,
        Method.PluginKind.Lora => Contracts.DevicePluginKind.Lora,
        Method.PluginKind.Adapter => Contracts.DevicePluginKind.Adapter,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>How a mode of the ladder combines the base's and the side network's outputs.</summary>
    public static Method.CombinationMode ToCombination(this Contracts.SessionMode mode) => mode switch
    {
        Contracts.SessionMode.Base => Method.CombinationMode.Base,
        Contracts.SessionMode.Side => Method.CombinationMode.Side,
        Contracts.SessionMode.Parallel => Method.CombinationMode.Parallel,
        Contracts.SessionMode.Switch => Method.CombinationMode.Switch,
        Contracts.SessionMode.Spa => Method.CombinationMode.Spa,
        _ => throw new ArgumentException($"mode '{Contracts.WireNames.Of(mode)}' is not a combination of the ladder side network"),
    };
}
