using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Who is at the other end of the connection, as established by mutual TLS. The mTLS listener sets it
/// on the connection after the handshake (once per connection, so the principal string is one instance
/// per connection); telemetry reads it through <see cref="PeerTelemetry"/> and nowhere else.
/// </summary>
internal interface IPeerIdentityFeature
{
    /// <summary>The peer's SPIFFE ID: spiffe://&lt;trust-domain&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;.</summary>
    string Principal { get; }

    /// <summary>The namespace segment of <see cref="Principal"/>, parsed once per connection.</summary>
    string Namespace { get; }
}

/// <summary>The single place telemetry learns the peer's principal and the connection's security policy.</summary>
internal static class PeerTelemetry
{
    public const string MutualTls = "mutual_tls";
    public const string None = "none";
    public const string Unknown = "unknown";

    /// <summary>The peer authenticated by mutual TLS on this connection (Identity/PeerIdentity); null (exported "unknown") on plaintext.</summary>
    public static IPeerIdentityFeature? Of(HttpContext context) => Identity.PeerIdentity.Of(context);

    /// <summary>Istio's connection_security_policy, reporter=destination: "mutual_tls" when the peer was authenticated, else "none".</summary>
    public static string SecurityPolicy(IPeerIdentityFeature? peer) => peer is null ? None : MutualTls;

    /// <summary>
    /// Istio's connection_security_policy, reporter=source: always "unknown". Istio defines it so because
    /// only the server side knows the policy it enforced; a source sidecar that originated mTLS reports the
    /// server's proven identity as destination_principal instead.
    /// </summary>
    public const string SourceSecurityPolicy = Unknown;
}
