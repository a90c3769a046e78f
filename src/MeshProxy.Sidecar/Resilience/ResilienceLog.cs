using Microsoft.Extensions.Logging;
using MeshProxy.Sidecar.LoadBalancing;

namespace MeshProxy.Sidecar.Resilience;

internal static partial class ResilienceLog
{
    [LoggerMessage(601, LogLevel.Warning, "Outlier detection ejected {Endpoint} from {Cluster} for {Seconds}s (ejection x{Multiplier}) after {Result}")]
    public static partial void Ejected(this ILogger logger, string endpoint, string cluster, double seconds, int multiplier, AttemptResult result);

    [LoggerMessage(602, LogLevel.Debug, "Retrying {Method} to {Cluster}: attempt {Attempt} failed on {Endpoint} ({Reason})")]
    public static partial void Retrying(this ILogger logger, string method, string cluster, int attempt, string endpoint, string reason);

    [LoggerMessage(604, LogLevel.Debug, "Resending {Method} to {Cluster}: {Endpoint} had closed the connection before the request was written (never sent)")]
    public static partial void ResendingUnsent(this ILogger logger, string method, string cluster, string endpoint);

    [LoggerMessage(603, LogLevel.Warning, "Upstream overflow UO: {Method} to {Cluster} refused by circuit breaker ({Limit})")]
    public static partial void Overflow(this ILogger logger, string method, string cluster, string limit);
}
