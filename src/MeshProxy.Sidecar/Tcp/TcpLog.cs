using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tcp;

internal static partial class TcpLog
{
    [LoggerMessage(EventId = 7001, EventName = "TcpConnectionOverflow", Level = LogLevel.Warning,
        Message = "TCP stream to {Cluster} refused: the cluster's connection limit ({Limit}) is reached (UO)")]
    public static partial void ConnectionOverflow(this ILogger logger, string cluster, int limit);

    [LoggerMessage(EventId = 7002, EventName = "TcpNoEndpoint", Level = LogLevel.Warning,
        Message = "TCP stream to {Cluster} refused: the cluster has no endpoint (UH)")]
    public static partial void NoEndpoint(this ILogger logger, string cluster);

    [LoggerMessage(EventId = 7003, EventName = "TcpUpstreamConnectFailed", Level = LogLevel.Warning,
        Message = "TCP stream to {Cluster} ({Endpoint}) not established (UF): {Reason}")]
    public static partial void UpstreamConnectFailed(this ILogger logger, string cluster, string endpoint, string reason);

    [LoggerMessage(EventId = 7004, EventName = "TcpIdleTimeout", Level = LogLevel.Information,
        Message = "TCP stream of {Cluster} closed: no byte moved for {Seconds} s (idle timeout)")]
    public static partial void IdleTimeout(this ILogger logger, string cluster, double seconds);

    [LoggerMessage(EventId = 7005, EventName = "TcpDeniedByDestination", Level = LogLevel.Warning,
        Message = "TCP stream to {Cluster} ({Endpoint}, {Principal}) denied by the destination's authorization policy (URBAC)")]
    public static partial void DeniedByDestination(this ILogger logger, string cluster, string endpoint, string? principal);
}
