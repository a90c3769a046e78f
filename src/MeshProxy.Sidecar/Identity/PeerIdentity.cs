using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Identity;

/// <summary>
/// Who is on the other end of an inbound connection, verified once in its handshake and kept in the
/// connection's items for every request on it. Authorization reads <see cref="SpiffeId"/>; telemetry reads
/// it as source_principal; the inbound forwarder passes <see cref="ForwardedClientCert"/> to the app.
/// A plaintext connection (PERMISSIVE mode) has none.
/// </summary>
internal sealed class PeerIdentity
{
    private PeerIdentity(SpiffeId spiffeId, string certificateHash, string forwardedClientCert, string? serverName)
    {
        SpiffeId = spiffeId;
        CertificateHash = certificateHash;
        ForwardedClientCert = forwardedClientCert;
        ServerName = serverName;
    }

    public SpiffeId SpiffeId { get; }

    /// <summary>The SPIFFE ID as text, for logs, metrics and authorization (one string per connection).</summary>
    public string Principal => SpiffeId.Value;

    /// <summary>The namespace segment of the SPIFFE ID ("" when the ID has no /ns/ segment).</summary>
    public string Namespace => SpiffeId.Namespace ?? string.Empty;

    /// <summary>Lowercase hex SHA-256 of the peer certificate's DER encoding.</summary>
    public string CertificateHash { get; }

    /// <summary>The x-forwarded-client-cert value, in Envoy's format: By=&lt;our ID&gt;;Hash=&lt;hex&gt;;URI=&lt;peer ID&gt;.</summary>
    public string ForwardedClientCert { get; }

    /// <summary>The server name (SNI) the peer asked for in its ClientHello, for `connection.sni` conditions; null when it sent none.</summary>
    public string? ServerName { get; }

    public static PeerIdentity Create(SpiffeId peer, X509Certificate2 certificate, SpiffeId? self, string? serverName)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(certificate.RawDataMemory.Span));
        var xfcc = self is null ? $"Hash={hash};URI={peer.Value}" : $"By={self.Value};Hash={hash};URI={peer.Value}";
        return new PeerIdentity(peer, hash, xfcc, string.IsNullOrEmpty(serverName) ? null : serverName);
    }

    /// <summary>The verified peer of the request's connection (a connection feature, which Kestrel's request features fall back to), or null on plaintext.</summary>
    public static PeerIdentity? Of(HttpContext context) => context.Features[typeof(PeerIdentity)] as PeerIdentity;
}
