using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Egress;

internal static partial class EgressLog
{
    [LoggerMessage(EventId = 700, Level = LogLevel.Warning,
        Message = "egress denied: protocol={Protocol} reason={Reason} host={Host} port={Port} original_destination={OriginalDestination} workload={WorkloadNamespace}/{Workload}")]
    public static partial void EgressDenied(this ILogger logger, string protocol, string reason, string host, int port, System.Net.IPEndPoint? originalDestination, string workloadNamespace, string workload);

    [LoggerMessage(EventId = 701, Level = LogLevel.Debug, Message = "egress tunnel: protocol={Protocol} host={Host} upstream={Upstream} policy={Policy}")]
    public static partial void TunnelOpened(this ILogger logger, string protocol, string? host, System.Net.EndPoint? upstream, string? policy);

    [LoggerMessage(EventId = 702, Level = LogLevel.Information, Message = "egress tunnel to {Host}:{Port} could not be opened: {Error}")]
    public static partial void TunnelConnectFailed(this ILogger logger, string host, int port, System.Net.Sockets.SocketError error);

    [LoggerMessage(EventId = 703, Level = LogLevel.Debug, Message = "egress connection closed before a decision")]
    public static partial void ClosedUndecided(this ILogger logger, Exception exception);
}
