using System.Net.Security;
using System.Security.Authentication;

namespace MeshProxy.Sidecar.Identity;

/// <summary>
/// The TLS parameters of every hop between sidecars, in one place so that both ends always agree.
/// TLS 1.2 and 1.3 only (OpenSSL negotiates the highest both sides have, so 1.3 whenever the peer has it);
/// forward-secret AEAD suites only.
/// </summary>
internal static class MeshTls
{
    public const SslProtocols Protocols = SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>How long a peer gets to complete a handshake (Kestrel's own default).</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// TLS 1.3's AEAD suites, and for 1.2 ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (ECDSA
    /// certificates, which SVIDs are, and RSA for operator-issued ones). No CBC, no RSA key exchange, no
    /// SHA-1 MACs, no 3DES/RC4/NULL/EXPORT. CipherSuitesPolicy is honoured on Linux (OpenSSL); elsewhere the
    /// platform's defaults apply.
    /// </summary>
    public static readonly TlsCipherSuite[] CipherSuites =
    [
        TlsCipherSuite.TLS_AES_128_GCM_SHA256,
        TlsCipherSuite.TLS_AES_256_GCM_SHA384,
        TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256,
        TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TlsCipherSuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];

    /// <summary>One shared policy object: .NET caches native TLS contexts per set of options, and an identical instance keeps that cache warm.</summary>
    public static readonly CipherSuitesPolicy? CipherSuitesPolicy =
        OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() ? new CipherSuitesPolicy(CipherSuites) : null;

    /// <summary>
    /// The ALPN of a TCP stream between sidecars (Tcp/README.md): a byte stream, not HTTP, whose first bytes each way
    /// are the sending sidecar's peer metadata. Our own value, as Istio has its own ("istio-peer-exchange"): an
    /// inbound sidecar that does not know it refuses the handshake rather than parse the stream as HTTP.
    /// </summary>
    public static readonly SslApplicationProtocol Tcp = new("meshproxy-tcp/1");

    /// <summary>What inbound offers, in order of preference (a client offers exactly one, so each is chosen by its client).</summary>
    public static readonly List<SslApplicationProtocol> InboundAlpn = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11, Tcp];

    public static readonly List<SslApplicationProtocol> OutboundAlpnTcp = [Tcp];

    public static readonly List<SslApplicationProtocol> OutboundAlpnHttp2 = [SslApplicationProtocol.Http2];

    public static readonly List<SslApplicationProtocol> OutboundAlpnHttp11 = [SslApplicationProtocol.Http11];
}
