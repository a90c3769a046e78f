using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The single place telemetry learns the peer's principal (the <see cref="Identity.PeerIdentity"/> the mTLS listener
/// verified) and the connection's security policy.
/// </summary>
internal static class PeerTelemetry
{
    public const string MutualTls = "mutual_tls";
    public const string None = "none";
    public const string Unknown = "unknown";

    /// <summary>The peer authenticated by mutual TLS on this connection (Identity/PeerIdentity); null (exported "unknown") on plaintext.</summary>
    public static Identity.PeerIdentity? Of(HttpContext context) => Identity.PeerIdentity.Of(context);

    /// <summary>Istio's connection_security_policy, reporter=destination: "mutual_tls" when the peer was authenticated, else "none".</summary>
    public static string SecurityPolicy(Identity.PeerIdentity? peer) => peer is null ? None : MutualTls;

    /// <summary>
    /// Istio's connection_security_policy, reporter=source: always "unknown". Istio defines it so because
    /// only the server side knows the policy it enforced; a source sidecar that originated mTLS reports the
    /// server's proven identity as destination_principal instead.
    /// </summary>
    public const string SourceSecurityPolicy = Unknown;
}
