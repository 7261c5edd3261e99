using Microsoft.Extensions.Logging;

namespace Spa.Cli.Commands;

/// <summary>
/// The log of a benchmark's silo, without the cancellations of its own stop. When a silo stops while a memory stream's
/// pulling agent has a queue read in flight, Orleans (10.4) logs the read's <see cref="OperationCanceledException"/> as
/// errors with their stacks; that is the stop the benchmark asked for, not a problem of its run. Every other entry, and
/// every entry before the stop, goes to the loggers of <paramref name="inner"/> as it is.
/// </summary>
public sealed class StoppingSiloLog(ILoggerFactory inner) : ILoggerProvider
{
    private CancellationToken _stopping = CancellationToken.None;

    /// <summary>From when <paramref name="stopping"/> is cancelled (the host's ApplicationStopping), cancellations are dropped.</summary>
    public void StopsWith(CancellationToken stopping) => _stopping = stopping;

    public ILogger CreateLogger(string categoryName) => new Logger(inner.CreateLogger(categoryName), this);

    public void Dispose() => inner.Dispose();

    private sealed class Logger(ILogger inner, StoppingSiloLog log) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (exception is OperationCanceledException && log._stopping.IsCancellationRequested) return;
            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }
}
