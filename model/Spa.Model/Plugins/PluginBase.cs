namespace Spa.Model.Plugins;

/// <summary>
/// What a plugin needs to know of its base: the dimensions its networks are built for, the identity it was trained
/// against, and where its tensors live. A device builds it from the description the cluster sends, without the base's
/// weights; in the cloud it comes from the loaded model.
/// </summary>
public sealed record PluginBase(LlamaConfig Config, string Identity, TorchSharp.torch.ScalarType DType, TorchSharp.torch.Device Device)
{
    public static PluginBase Of(LlamaModel model) => new(model.Config, model.Identity, model.DType, model.Device);
}
