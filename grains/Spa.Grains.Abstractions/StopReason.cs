namespace Spa.Grains.Abstractions;

/// <summary>Why a call's tokens end.</summary>
[GenerateSerializer, Alias("spa.StopReason")]
public enum StopReason
{
    /// <summary>The call's token budget is spent; <c>Continue</c> can go on.</summary>
    Length = 0,

    /// <summary>End of sequence: the model emitted EOS (or BOS, between llama2.c stories); the token is included.</summary>
    Eos = 1,

    /// <summary>The model's context is full.</summary>
    Context = 2,

    /// <summary>The device was unavailable and the request's fallback is <see cref="FallbackPolicy.Fail"/>.</summary>
    DeviceUnavailable = 3,
}
