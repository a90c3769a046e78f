using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>The certificate service's log lines (the CA's own signing lines come from MeshProxy.Identity).</summary>
internal static partial class CertificateLog
{
    [LoggerMessage(130, LogLevel.Warning, "Certificate request refused ({Reason}) for {Workload} from {Peer}: {Message}")]
    public static partial void CertificateRefused(this ILogger logger, string reason, string workload, string peer, string message);

    [LoggerMessage(131, LogLevel.Information, "MeshConfig changed: CA reloaded for trust domain {TrustDomain}, TTL {Ttl}, maximum {MaxTtl}")]
    public static partial void CaReloaded(this ILogger logger, string trustDomain, TimeSpan ttl, TimeSpan maxTtl);

    [LoggerMessage(132, LogLevel.Error, "MeshConfig changed but the CA could not be reloaded; the current one keeps signing: {Error}")]
    public static partial void CaReloadFailed(this ILogger logger, string error);

    [LoggerMessage(133, LogLevel.Information, "Token store {Path} reloaded: {Count} workloads")]
    public static partial void TokenStoreReloaded(this ILogger logger, string path, int count);

    [LoggerMessage(134, LogLevel.Error, "Token store {Path} could not be reloaded; the previous tokens stay in force: {Error}")]
    public static partial void TokenStoreReloadFailed(this ILogger logger, string path, string error);

    [LoggerMessage(135, LogLevel.Information, "Control plane certificate for {SpiffeId} ready; gRPC over TLS on {EndPoint}")]
    public static partial void TlsReady(this ILogger logger, string spiffeId, string endPoint);

    [LoggerMessage(136, LogLevel.Warning, "The CA changed but the control plane's certificate for {SpiffeId} could not be issued again; the current one stays until its renewal: {Error}")]
    public static partial void TlsReissueFailed(this ILogger logger, string spiffeId, string error);

    [LoggerMessage(120, LogLevel.Information, "Plug-in CA found in {Secret}: it signs, its root-cert.pem is the trust bundle")]
    public static partial void PluginCaFound(this ILogger logger, string secret);

    [LoggerMessage(121, LogLevel.Information, "Created the mesh's root CA in {Secret} (holding the Lease as {Identity})")]
    public static partial void RootCreated(this ILogger logger, string secret, string identity);

    [LoggerMessage(122, LogLevel.Information, "No root CA in Secret {Namespace}/{Secret} yet and another replica holds Lease {Lease}: waiting for it to create the root")]
    public static partial void WaitingForRoot(this ILogger logger, string @namespace, string secret, string lease);

    [LoggerMessage(123, LogLevel.Warning, "Cannot read the CA Secret {Namespace}/{Secret}: {Error}; signing with what was last read until it is too old")]
    public static partial void CaSecretUnreadable(this ILogger logger, string @namespace, string secret, string error);

    [LoggerMessage(124, LogLevel.Error, "{Secret} is not usable ({Error}); the CA keeps signing with what it last read")]
    public static partial void CaSecretInvalid(this ILogger logger, string secret, string error);

    [LoggerMessage(125, LogLevel.Error, "The CA Secret {Namespace}/{Secret} was deleted; the CA keeps signing with what it last read and never generates a new root while running. Restore the Secret: a replica started without it creates a new root, which no existing certificate chains to")]
    public static partial void CaSecretMissing(this ILogger logger, string @namespace, string secret);

    [LoggerMessage(126, LogLevel.Information, "Root rotation step in {Secret}: {Step} (by {Identity}, holding the Lease)")]
    public static partial void RotationStep(this ILogger logger, string secret, string step, string identity);

    [LoggerMessage(127, LogLevel.Information, "Root rotation step in {Secret} not written: the Secret changed since it was read (409 Conflict); reading it again")]
    public static partial void RotationStepConflict(this ILogger logger, string secret);

    [LoggerMessage(128, LogLevel.Information, "CA key material changed ({Origin}, rotation phase {Phase}): now signing as {Subject}, trust bundle of {Roots} root(s)")]
    public static partial void CaMaterialChanged(this ILogger logger, string origin, string phase, string subject, int roots);

    [LoggerMessage(129, LogLevel.Warning, "Cannot take or renew Lease {Namespace}/{Lease}: {Error}; not stepping any root rotation this round")]
    public static partial void LeaseUnavailable(this ILogger logger, string @namespace, string lease, string error);
}
