using Microsoft.Extensions.Logging;
using Spa.Cli.Commands;

namespace Spa.Cli.Tests;

public class StoppingSiloLogTests
{
    [Fact]
    public void DropsOnlyTheCancellationsOfTheStop()
    {
        var written = new Recorder();
        using var stopping = new CancellationTokenSource();
        using var log = new StoppingSiloLog(LoggerFactory.Create(factory => factory.AddProvider(written)));
        log.StopsWith(stopping.Token);
        var logger = log.CreateLogger("Orleans.Streams");

        logger.LogError(new OperationCanceledException(), "cancelled while running");
        logger.LogError(new InvalidOperationException(), "failed while running");
        stopping.Cancel();
        logger.LogError(new OperationCanceledException(), "cancelled by the stop");
        logger.LogError(new TaskCanceledException(), "task cancelled by the stop");
        logger.LogError(new InvalidOperationException(), "failed while stopping");
        logger.LogWarning("stopping");

        Assert.Equal(["cancelled while running", "failed while running", "failed while stopping", "stopping"], written.Messages);
    }

    private sealed class Recorder : ILoggerProvider, ILogger
    {
        public List<string> Messages { get; } = [];

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Messages.Add(formatter(state, exception));

        public void Dispose()
        {
        }
    }
}
