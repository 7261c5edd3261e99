using System.Text.RegularExpressions;

namespace Spa.Grains.Abstractions;

/// <summary>
/// What a client may name and store: device ids and device secrets. Each check throws
/// <see cref="InvalidSettingException"/> naming the HTTP field, so the HTTP API, the command line and the grains refuse
/// the same values the same way.
/// </summary>
public static partial class ClientInputs
{
    public const int MaxDeviceIdLength = 64;
    public const int MinSecretLength = 16;
    public const int MaxSecretLength = 256;

    /// <summary>
    /// The least information a secret must carry, estimated from its own character frequencies (length x the Shannon
    /// entropy per character): 16 distinct characters carry 64 bits, "aaaaaaaabbbbbbbb" 16. A floor against degenerate
    /// secrets, not a strength meter: a secret chosen by a person can pass it and still be guessable.
    /// </summary>
    public const double MinSecretBits = 48;

    /// <summary>A device id: 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-', and nothing after them (no final newline).</summary>
    public static bool IsDeviceId(string? id) => id is not null && DeviceIdPattern().IsMatch(id);

    public static void CheckDeviceId(string? id, string field)
    {
        if (!IsDeviceId(id))
            throw new InvalidSettingException($"{field} must be 1 to {MaxDeviceIdLength} of A-Z, a-z, 0-9, '.', '_', '-'", field);
    }

    /// <summary>A device secret: 16 to 256 printable ASCII characters without spaces, carrying at least <see cref="MinSecretBits"/>.</summary>
    public static void CheckSecret(string? secret)
    {
        if (secret is null || secret.Length < MinSecretLength || secret.Length > MaxSecretLength)
            throw new InvalidSettingException($"secret must have {MinSecretLength} to {MaxSecretLength} characters", "secret");
        if (secret.Any(c => c is < '!' or > '~'))
            throw new InvalidSettingException("secret must be printable ASCII without spaces or control characters", "secret");
        double bits = SecretBits(secret);
        if (bits < MinSecretBits)
            throw new InvalidSettingException($"secret repeats itself too much: it carries about {bits:F0} bits, at least {MinSecretBits} are needed", "secret");
    }

    private static double SecretBits(string secret) =>
        -secret.GroupBy(c => c).Sum(g => g.Count() * Math.Log2((double)g.Count() / secret.Length));

    // \z, not $: $ also matches before a final newline, which would let "phone-a\n" through.
    [GeneratedRegex(@"\A[A-Za-z0-9._-]{1,64}\z")]
    private static partial Regex DeviceIdPattern();
}
