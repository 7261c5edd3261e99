using System.Globalization;

namespace Spa.Silo;

/// <summary>
/// What the command line of <c>Spa.Silo</c> and <c>spa serve</c> sets; anything left null falls back to the
/// configuration (appsettings.json, environment variables such as <c>Spa__Model__ModelPath</c> or ASPNETCORE_URLS).
/// </summary>
public sealed class SiloHostOptions
{
    /// <summary>Where HTTP listens: "HOST:PORT" or a URL (port 0: any free port). Default: ASPNETCORE_URLS, else 127.0.0.1:8080.</summary>
    public string? Http { get; set; }

    /// <summary>The model checkpoint (Spa:Model:ModelPath); default $SPA_MODEL, else stories260K beside the repository.</summary>
    public string? Model { get; set; }

    /// <summary>Shards per session (Spa:Model:Shards).</summary>
    public int? Shards { get; set; }

    /// <summary>An API key accepted in addition to those of Spa:Auth:Keys (its user is "default").</summary>
    public string? ApiKey { get; set; }

    /// <summary>Silo-to-silo port of the localhost cluster (Orleans' default 11111).</summary>
    public int SiloPort { get; set; } = 11111;

    /// <summary>Client gateway port of the localhost cluster (Orleans' default 30000).</summary>
    public int GatewayPort { get; set; } = 30000;

    /// <summary>Where the generated API key is announced; default stdout.</summary>
    public TextWriter? Announce { get; set; }

    public const string Usage =
        "usage: Spa.Silo [--http HOST:PORT] [--model PATH] [--shards N] [--api-key KEY] [--silo-port N] [--gateway-port N]";

    /// <summary>Parses the silo program's arguments; throws <see cref="ArgumentException"/> with a one-line reason.</summary>
    public static SiloHostOptions Parse(IReadOnlyList<string> args)
    {
        var options = new SiloHostOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string name = args[i], value;
            int eq = name.IndexOf('=');
            if (name.StartsWith("--", StringComparison.Ordinal) && eq > 0) (name, value) = (name[..eq], name[(eq + 1)..]);
            else if (i + 1 < args.Count) value = args[++i];
            else throw new ArgumentException($"{name} needs a value ({Usage})");
            switch (name)
            {
                case "--http": options.Http = value; break;
                case "--model": options.Model = value; break;
                case "--api-key": options.ApiKey = value; break;
                case "--shards": options.Shards = PositiveInt(name, value); break;
                case "--silo-port": options.SiloPort = PositiveInt(name, value); break;
                case "--gateway-port": options.GatewayPort = PositiveInt(name, value); break;
                default: throw new ArgumentException($"unknown option '{name}' ({Usage})");
            }
        }
        return options;
    }

    /// <summary>"HOST:PORT" or a URL as a URL Kestrel binds to.</summary>
    public static string ToUrl(string http) =>
        http.Contains("://", StringComparison.Ordinal) ? http : "http://" + http;

    private static int PositiveInt(string name, string value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n
        : throw new ArgumentException($"{name} must be a positive integer, got '{value}'");
}
