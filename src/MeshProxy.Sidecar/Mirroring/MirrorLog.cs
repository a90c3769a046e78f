using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Mirroring;

internal static partial class MirrorLog
{
    // Debug: a shadow that is down would otherwise log a line per copied request; the counter
    // meshproxy_mirror_requests_total{result="failed"} is how an operator sees it.
    [LoggerMessage(EventId = 7200, Level = LogLevel.Debug, Message = "mirror copy to {Cluster} failed: {Reason}")]
    public static partial void MirrorFailed(this ILogger logger, string cluster, string reason);
}
