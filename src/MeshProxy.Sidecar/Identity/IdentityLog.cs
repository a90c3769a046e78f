using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Identity;

/// <summary>The identity and TLS log lines. Event ids 400-499 are this folder's.</summary>
internal static partial class IdentityLog
{
    [LoggerMessage(401, LogLevel.Warning, "Inbound mTLS refused from {Remote}: client certificate {Reason}: {Detail}")]
    public static partial void InboundPeerRefused(this ILogger logger, string remote, string reason, string detail);

    [LoggerMessage(402, LogLevel.Information, "Inbound TLS handshake from {Remote} failed: {Error}")]
    public static partial void InboundHandshakeFailed(this ILogger logger, string remote, string error);

    [LoggerMessage(403, LogLevel.Warning, "Inbound plaintext connection from {Remote} to port {Port} refused: mTLS mode STRICT (set by {SetBy})")]
    public static partial void PlaintextRefused(this ILogger logger, string remote, int port, string setBy);

    [LoggerMessage(404, LogLevel.Warning, "Inbound connection from {Remote} refused: no SVID yet (the identity source has not delivered one)")]
    public static partial void NoSvidYet(this ILogger logger, string remote);

    [LoggerMessage(405, LogLevel.Information, "Identity {SpiffeId} loaded from {Source}: serial {Serial}, valid until {NotAfter:O}, trust bundle of {Roots} root(s)")]
    public static partial void SvidLoaded(this ILogger logger, string spiffeId, string source, string serial, DateTimeOffset notAfter, int roots);

    [LoggerMessage(406, LogLevel.Error, "Identity files could not be used, the current identity stays in force: {Error}")]
    public static partial void SvidLoadFailed(this ILogger logger, string error);

    [LoggerMessage(407, LogLevel.Warning, "Identity configuration changed ({Detail}); inbound TLS on or off needs a restart")]
    public static partial void IdentityModeChangeIgnored(this ILogger logger, string detail);

    [LoggerMessage(408, LogLevel.Debug, "Outbound mTLS to {Endpoint}: server certificate {Reason}: {Detail}")]
    public static partial void OutboundPeerRefused(this ILogger logger, string endpoint, string reason, string detail);

    [LoggerMessage(409, LogLevel.Information, "Requesting a certificate for {SpiffeId} from the control plane's CA at {Address}")]
    public static partial void RequestingCertificate(this ILogger logger, string spiffeId, string address);

    [LoggerMessage(410, LogLevel.Warning, "Saved certificate {Path} ignored, waiting for the control plane's CA: {Reason}")]
    public static partial void SavedSvidIgnored(this ILogger logger, string path, string reason);

    [LoggerMessage(411, LogLevel.Warning, "Saving the certificate to {Path} failed (a restart during a control-plane outage would have none): {Error}")]
    public static partial void SvidSaveFailed(this ILogger logger, string path, string error);

    [LoggerMessage(412, LogLevel.Warning, "Inbound TLS handshakes over the rate limit: {Refused} connection(s) closed before their handshake in the last {Seconds:0}s or so (meshproxy_tls_handshakes_shed_total)")]
    public static partial void HandshakesShed(this ILogger logger, long refused, double seconds);

    [LoggerMessage(420, LogLevel.Warning, "Inbound TLS connection from {Remote} to port {Port} refused: mTLS mode DISABLE (set by {SetBy}) serves plaintext only")]
    public static partial void TlsRefusedOnDisabledPort(this ILogger logger, string remote, int port, string setBy);
}
