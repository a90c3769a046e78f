using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// The listeners' Kestrel servers log through the host's loggers, less the scope Kestrel opens for every
/// connection it accepts. That scope (the connection id, pushed on an AsyncLocal) lives as long as the
/// connection: with its ExecutionContext, ~150 bytes per idle keep-alive connection (benchmarks/RESULTS.md,
/// "Idle keep-alive connections: what holds the memory"), for a console formatter that prints no scopes
/// (SidecarHost: IncludeScopes is off). Kestrel's own messages carry the connection id in their text.
/// </summary>
internal sealed class ScopelessLoggerFactory(ILoggerFactory inner) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new ScopelessLogger(inner.CreateLogger(categoryName));

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    /// <summary>Nothing: the host owns the factory this one wraps.</summary>
    public void Dispose()
    {
    }

    private sealed class ScopelessLogger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            inner.Log(logLevel, eventId, state, exception, formatter);
    }
}
