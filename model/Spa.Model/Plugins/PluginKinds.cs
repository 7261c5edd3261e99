namespace Spa.Model.Plugins;

/// <summary>Where a user's private parameters sit relative to the base model.</summary>
public enum PluginKind
{
    /// <summary>The SPA side network: a ladder fed by the base's residual stream, outside the base.</summary>
    Ladder,

    /// <summary>Ladder side-tuning: a narrow transformer with gated ladders and its own KV cache.</summary>
    Lst,

    /// <summary>Rank-r LoRA on q and v of every layer: inside the base, one round trip per layer.</summary>
    Lora,

    /// <summary>Houlsby adapters after attention and after the MLP of every layer: two round trips per layer.</summary>
    Adapter,
}

/// <summary>How the base's and the plugin's outputs make the logits (docs/method.md).</summary>
public enum CombinationMode
{
    /// <summary>The base alone; the edge is never involved.</summary>
    Base,

    /// <summary>S3 / LST: logits from the plugin alone, <c>W_lm out</c>.</summary>
    Side,

    /// <summary>S1, full integration: <c>W_lm (n + out)</c> at every token.</summary>
    Parallel,

    /// <summary>S2: the gate picks <c>W_lm out</c> or the base's logits.</summary>
    Switch,

    /// <summary>SPA: the gate picks <c>W_lm (n + out)</c> or the base's logits.</summary>
    Spa,
}

/// <summary>Where the down-projections of the taps run, which decides what travels to the edge.</summary>
public enum TapPlacement
{
    /// <summary>The cloud sends the raw taps (L+1 vectors of d values) and holds no plugin parameter but the gate.</summary>
    Edge,

    /// <summary>The cloud runs the projections and sends L+1 vectors of d_s values.</summary>
    Cloud,
}

/// <summary>How activations travel over the network.</summary>
public enum ActivationType
{
    Fp32,
    Fp16,

    /// <summary>One byte a value plus a 4-byte fp32 scale per vector.</summary>
    Int8,
}

public static class PluginNames
{
    public static PluginKind ParseKind(string text) => Parse<PluginKind>(text, "plugin kind", "ladder, lst, lora, adapter");

    public static CombinationMode ParseMode(string text) => Parse<CombinationMode>(text, "mode", "base, side, parallel, switch, spa");

    public static TapPlacement ParsePlacement(string text) => Parse<TapPlacement>(text, "tap placement", "edge, cloud");

    public static ActivationType ParseActivation(string text) => Parse<ActivationType>(text, "activation type", "fp32, fp16, int8");

    public static GateInput ParseGateInput(string text) => Parse<GateInput>(text, "gate input", "hidden, hidden-and-token");

    public static GateLabel ParseGateLabel(string text) => Parse<GateLabel>(text, "gate label", "token, word");

    public static GateObjective ParseGateObjective(string text) => Parse<GateObjective>(text, "gate objective", "two-stage, joint");

    /// <summary>The value as command lines and files spell it: lower case, words joined by '-' ("hidden-and-token").</summary>
    public static string Name<T>(T value) where T : struct, Enum => System.Text.Json.JsonNamingPolicy.KebabCaseLower.ConvertName(value.ToString());

    private static T Parse<T>(string text, string what, string choices) where T : struct, Enum =>
        !text.Contains(',') && Enum.TryParse<T>(text.Trim().Replace("-", ""), ignoreCase: true, out var value) && Enum.IsDefined(value)
            ? value
            : throw new ArgumentException($"unknown {what} '{text}': use one of {choices}");
}
