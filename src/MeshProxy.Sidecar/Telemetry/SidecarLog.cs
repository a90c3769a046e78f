using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>Every log line the sidecar writes, source-generated so that a disabled level costs nothing.</summary>
internal static partial class SidecarLog
{
    [LoggerMessage(1, LogLevel.Information, "Configuration {Version} applied from {Source}")]
    public static partial void ConfigApplied(this ILogger logger, string version, string source);

    [LoggerMessage(2, LogLevel.Error, "Configuration from {Source} refused, the last good configuration ({Version}) keeps serving: {Errors}")]
    public static partial void ConfigRejected(this ILogger logger, string source, string version, string errors);

    [LoggerMessage(3, LogLevel.Warning, "Configuration warning: {Warning}")]
    public static partial void ConfigWarning(this ILogger logger, string warning);

    [LoggerMessage(4, LogLevel.Information, "{Listener} listener on {Address}")]
    public static partial void ListenerStarted(this ILogger logger, string listener, string address);

    [LoggerMessage(5, LogLevel.Information, "Draining: inbound stopped accepting; open connections are told to close (Connection: close, GOAWAY); outbound serves for {DrainSeconds}s more")]
    public static partial void Draining(this ILogger logger, double drainSeconds);

    [LoggerMessage(6, LogLevel.Information, "Stopped")]
    public static partial void Stopped(this ILogger logger);

    [LoggerMessage(7, LogLevel.Information, "No route: {Direction} request for '{Authority}' matches no service (NR)")]
    public static partial void NoRoute(this ILogger logger, string direction, string authority);

    [LoggerMessage(8, LogLevel.Warning, "Upstream failure {Flags}: {Direction} {Method} to {Cluster} at {Endpoint}: {Error}")]
    public static partial void UpstreamFailed(this ILogger logger, string flags, string direction, string method, string cluster, string endpoint, string error);

    [LoggerMessage(9, LogLevel.Warning, "Listener port changes need a restart: {Detail}; the listeners stay where they are")]
    public static partial void ListenerChangeIgnored(this ILogger logger, string detail);

    [LoggerMessage(10, LogLevel.Information, "{Command} requested on the admin port")]
    public static partial void AdminCommand(this ILogger logger, string command);

    [LoggerMessage(11, LogLevel.Error, "Reading configuration file {Path} failed: {Error}")]
    public static partial void ConfigReadFailed(this ILogger logger, string path, string error);

    [LoggerMessage(12, LogLevel.Warning, "Inbound requests still in flight after the grace period were aborted")]
    public static partial void InboundAborted(this ILogger logger);

    /// <summary>The exception behind an <see cref="UpstreamFailed"/> line, with its stack trace: Debug only, so a failing upstream costs one line a request.</summary>
    [LoggerMessage(13, LogLevel.Debug, "Upstream failure {Flags} detail: {Direction} to {Endpoint}")]
    public static partial void UpstreamFailureDetail(this ILogger logger, string flags, string direction, string endpoint, Exception exception);

    [LoggerMessage(14, LogLevel.Warning, "Sidecar not ready SNR: {Direction} {Method} to {Destination} answered 503 after holding it {HeldSeconds}s: {Reason}")]
    public static partial void NotReady(this ILogger logger, string direction, string method, string destination, double heldSeconds, string reason);

    /// <summary>A request refused because of the caller's own bytes (DPE): Debug, as a client controls how often it happens.</summary>
    [LoggerMessage(18, LogLevel.Debug, "Request refused {Flags}: {Direction} {Method} to {Cluster}: {Reason}")]
    public static partial void DownstreamRefused(this ILogger logger, string flags, string direction, string method, string cluster, string reason);

    /// <summary>A request its caller aborted (DC): Debug, as the caller decides how often; Telemetry/AbortedRequests.cs sums them up.</summary>
    [LoggerMessage(20, LogLevel.Debug, "Caller went away {Flags}: {Direction} {Method} to {Cluster} at {Endpoint}: {Reason}")]
    public static partial void DownstreamAborted(this ILogger logger, string flags, string direction, string method, string cluster, string endpoint, string reason);

    [LoggerMessage(17, LogLevel.Warning, "TLS key exchange is not limited to X25519, P-256 and P-384 ({Reason}): a client can ask for a costly finite-field group")]
    public static partial void TlsGroupsNotLimited(this ILogger logger, string reason);

    [LoggerMessage(21, LogLevel.Information, "GC: {Settings}")]
    public static partial void GcSettingsResolved(this ILogger logger, string settings);

    [LoggerMessage(22, LogLevel.Warning, "GC: a heap hard limit without the concurrent GC: .NET 10's GC can crash this process (SIGSEGV) when its heap nears the limit (dotnet/runtime#129681); set DOTNET_gcConcurrent=1 beside DOTNET_GCHeapHardLimit, as the injector does")]
    public static partial void GcHardLimitWithoutConcurrentGc(this ILogger logger);
}
