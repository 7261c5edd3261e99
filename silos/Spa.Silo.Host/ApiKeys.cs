using System.Security.Cryptography;
using System.Text;

namespace Spa.Silo;

/// <summary>
/// The API keys the HTTP host accepts, each mapped to a user. Only SHA-256 hashes are kept, and a presented key is
/// compared with every stored hash in constant time, so neither memory nor timing reveals a key.
/// </summary>
public sealed class ApiKeys
{
    public const string Section = "Spa:Auth:Keys";
    public const string DefaultUser = "default";

    private readonly List<(byte[] Hash, string User)> _keys = [];

    /// <summary>The key generated at start because none was configured (printed once); null otherwise.</summary>
    public string? GeneratedKey { get; }

    public int Count => _keys.Count;

    /// <summary>Keys of <see cref="Section"/> (key → user) plus <paramref name="extraKey"/>; one fresh key when there are none.</summary>
    public ApiKeys(IConfiguration configuration, string? extraKey)
    {
        foreach (var entry in configuration.GetSection(Section).GetChildren())
            Add(entry.Key, string.IsNullOrWhiteSpace(entry.Value) ? DefaultUser : entry.Value);
        if (!string.IsNullOrEmpty(extraKey)) Add(extraKey, DefaultUser);
        if (_keys.Count == 0)
        {
            GeneratedKey = "spa-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
            Add(GeneratedKey, DefaultUser);
        }
    }

    private void Add(string key, string user)
    {
        if (string.IsNullOrWhiteSpace(key)) throw new ArgumentException("an API key may not be empty");
        _keys.Add((Hash(key), user));
    }

    /// <summary>The user of <paramref name="key"/>, or null. Looks at every stored key whatever matches first.</summary>
    public string? Authenticate(string? key)
    {
        if (string.IsNullOrEmpty(key)) return null;
        var hash = Hash(key);
        string? user = null;
        foreach (var (stored, owner) in _keys)
            if (CryptographicOperations.FixedTimeEquals(stored, hash)) user ??= owner;
        return user;
    }

    /// <summary>The bearer token of an Authorization header value, or null.</summary>
    public static string? BearerToken(string? header)
    {
        const string scheme = "Bearer ";
        if (header is null || !header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)) return null;
        var token = header[scheme.Length..].Trim();
        return token.Length == 0 ? null : token;
    }

    private static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));
}
