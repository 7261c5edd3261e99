using Microsoft.Extensions.Logging.Console;

namespace Spa.Silo;

/// <summary>
/// Lines for the operator (the model served, a generated API key): on <see cref="SiloHostOptions.Announce"/> when a
/// command gives one, else on stdout as plain text, or, when the console logs JSON (Logging:Console:FormatterName
/// json), as a log entry, so that every line of stdout stays one JSON object for the log collector.
/// </summary>
public sealed class Announcer(SiloHostOptions options, IConfiguration configuration, ILogger<Announcer> logger)
{
    private readonly bool _logsAreJson =
        string.Equals(configuration["Logging:Console:FormatterName"], ConsoleFormatterNames.Json, StringComparison.OrdinalIgnoreCase);

    public void Say(string line)
    {
        if (options.Announce is null && _logsAreJson)
        {
            logger.LogInformation("{Announcement}", line);
            return;
        }
        var writer = options.Announce ?? Console.Out;
        writer.WriteLine(line);
        writer.Flush();
    }
}
