using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>The certificate service's log lines (the CA's own signing lines come from MeshProxy.Identity).</summary>
internal static partial class CertificateLog
{
    [LoggerMessage(100, LogLevel.Warning, "Certificate request refused ({Reason}) for {Workload} from {Peer}: {Message}")]
    public static partial void CertificateRefused(this ILogger logger, string reason, string workload, string peer, string message);

    [LoggerMessage(101, LogLevel.Information, "MeshConfig changed: CA reloaded for trust domain {TrustDomain}, TTL {Ttl}, maximum {MaxTtl}")]
    public static partial void CaReloaded(this ILogger logger, string trustDomain, TimeSpan ttl, TimeSpan maxTtl);

    [LoggerMessage(102, LogLevel.Error, "MeshConfig changed but the CA could not be reloaded; the current one keeps signing: {Error}")]
    public static partial void CaReloadFailed(this ILogger logger, string error);

    [LoggerMessage(103, LogLevel.Information, "Token store {Path} reloaded: {Count} workloads")]
    public static partial void TokenStoreReloaded(this ILogger logger, string path, int count);

    [LoggerMessage(104, LogLevel.Error, "Token store {Path} could not be reloaded; the previous tokens stay in force: {Error}")]
    public static partial void TokenStoreReloadFailed(this ILogger logger, string path, string error);

    [LoggerMessage(105, LogLevel.Information, "Control plane certificate for {SpiffeId} ready; gRPC over TLS on {EndPoint}")]
    public static partial void TlsReady(this ILogger logger, string spiffeId, string endPoint);
}
