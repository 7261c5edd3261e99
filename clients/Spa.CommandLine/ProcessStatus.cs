using System.Globalization;

namespace Spa.CommandLine;

/// <summary>A memory field of a Linux process's /proc/PID/status, in bytes: VmRSS (resident now) or VmHWM (the peak so far).</summary>
public static class ProcessStatus
{
    /// <param name="process">A process id, or "self".</param>
    public static long Bytes(string field, string process = "self")
    {
        string file = $"/proc/{process}/status";
        var line = File.ReadLines(file).FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            ?? throw new InvalidDataException($"{file} has no {field}");
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }
}
