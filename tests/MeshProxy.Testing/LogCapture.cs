using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Testing;

/// <summary>Keeps every log line a sidecar writes, with its event id, so tests can count the lines an event produced.</summary>
public sealed class LogCapture : ILoggerProvider
{
    private readonly List<(int EventId, LogLevel Level, string Message)> _lines = [];

    public IReadOnlyList<(int EventId, LogLevel Level, string Message)> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public void Register(IServiceCollection services) => services.AddSingleton<ILoggerProvider>(this);

    public IReadOnlyList<string> WithEvent(int eventId) => Lines.Where(l => l.EventId == eventId).Select(l => l.Message).ToList();

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    private sealed class Logger(LogCapture owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (owner._lines)
            {
                owner._lines.Add((eventId.Id, logLevel, formatter(state, exception)));
            }
        }
    }
}
