using System.Net;
using System.Net.Http;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// Originates mutual TLS to mesh endpoints, as the ConnectCallback of the outbound mTLS handler: TCP, then
/// an SslStream handshake presenting the SVID current at that moment (so pooled connections keep the
/// certificate they were made with and new ones take a rotated one), then the server's certificate checked
/// against the trust bundle and the identities its endpoint may have. The handler above sees an already
/// secured stream and speaks HTTP/1.1 or HTTP/2 (prior knowledge) over it, as the request's version asks;
/// ALPN offers exactly that protocol, so the inbound sidecar picks the same one.
/// </summary>
internal sealed class UpstreamTls(SidecarIdentity identity, SnapshotStore snapshots, UpstreamIdentities expected, PeerCertificateVerifier verifier, ILogger logger)
{
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var endPoint = context.DnsEndPoint;

        // Checked before dialling: without an SVID this sidecar cannot speak for itself, which is its own
        // failure, not the endpoint's (the outbound pipeline holds requests until the first one arrives, so
        // this is a race at most).
        if (identity.Store.Current is not { } svid || identity.Store.TrustBundle is not { } bundle)
        {
            throw new OwnFailureException($"no certificate yet: cannot originate mTLS to {endPoint.Host}:{endPoint.Port}");
        }

        // The TCP connection comes from the resilience layer's connector, so mTLS destinations get
        // the same per-destination connect timeout and connection limit as plaintext ones.
        var transport = await Resilience.UpstreamConnector.ConnectAsync(context, cancellationToken);
        var alpn = context.InitialRequestMessage.Version.Major >= 2 ? MeshTls.OutboundAlpnHttp2 : MeshTls.OutboundAlpnHttp11;
        var (ssl, principal) = await SecureAsync(transport, svid, bundle, endPoint, alpn, cancellationToken);

        // Telemetry's destination_principal (reporter=source). The request that made this connection
        // went to this endpoint (a pool's connections are per host and port), so its endpoint record is
        // this server's; the requests that later use the connection read it from there.
        if (context.InitialRequestMessage.Options.TryGetValue(Resilience.RequestAttempts.EndpointOption, out var endpoint))
        {
            endpoint.Health.VerifiedPrincipal = principal;
        }

        return ssl;
    }

    /// <summary>
    /// mTLS over an open connection to a mesh endpoint for a TCP stream (Tcp/TcpProxy.cs), or for a gRPC call made
    /// outside the request path (Hosting/MeshServiceConnector.cs, with the h2 ALPN): the same SVID, trust bundle,
    /// expected identities and refusal accounting as an HTTP connection, with the TCP ALPN unless
    /// <paramref name="alpn"/> says otherwise. The stream owns <paramref name="transport"/>, and disposes it on failure.
    /// </summary>
    /// <returns>The secured stream and the server's proven SPIFFE ID.</returns>
    public Task<(SslStream Stream, string Principal)> ConnectTcpAsync(Stream transport, DnsEndPoint endPoint, CancellationToken cancellationToken, List<SslApplicationProtocol>? alpn = null)
    {
        if (identity.Store.Current is not { } svid || identity.Store.TrustBundle is not { } bundle)
        {
            transport.Dispose();
            throw new OwnFailureException($"no certificate yet: cannot originate mTLS to {endPoint.Host}:{endPoint.Port}");
        }

        return SecureAsync(transport, svid, bundle, endPoint, alpn ?? MeshTls.OutboundAlpnTcp, cancellationToken);
    }

    /// <summary>The handshake over <paramref name="transport"/>, counted and (a refused server) logged; the transport is disposed on failure.</summary>
    private async Task<(SslStream Stream, string Principal)> SecureAsync(
        Stream transport, X509Svid svid, TrustBundle bundle, DnsEndPoint endPoint, List<SslApplicationProtocol> alpn, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(transport, leaveInnerStreamOpen: false);
        try
        {
            var principal = await AuthenticateAsync(ssl, svid, bundle, endPoint, alpn, cancellationToken);
            identity.Counters.CountOutboundHandshake();
            return (ssl, principal);
        }
        catch (UpstreamPeerRefusedException ex)
        {
            identity.Counters.CountOutboundRefused(ex.Verdict.Failure);
            logger.OutboundPeerRefused($"{endPoint.Host}:{endPoint.Port}", ex.Verdict.Failure.ToString(), ex.Verdict.Message);
            await ssl.DisposeAsync();
            throw;
        }
        catch
        {
            identity.Counters.CountOutboundHandshakeFailure();
            await ssl.DisposeAsync();
            throw;
        }
    }

    /// <returns>The server's proven SPIFFE ID, as the string instance of the snapshot's expected set (so metrics see one instance per identity, not one per handshake).</returns>
    private async Task<string> AuthenticateAsync(SslStream ssl, X509Svid svid, TrustBundle bundle, DnsEndPoint endPoint, List<SslApplicationProtocol> alpn, CancellationToken cancellationToken)
    {
        var name = $"{endPoint.Host}:{endPoint.Port}";

        var snapshot = snapshots.Current;
        var allowed = expected.For(snapshot, endPoint.Host, endPoint.Port);
        var trustDomain = snapshot.Mesh.TrustDomain;
        PeerVerificationResult? verdict = null;
        var options = new SslClientAuthenticationOptions
        {
            // An IP literal sends no SNI; the server's identity is its SPIFFE ID, not a host name.
            TargetHost = endPoint.Host,
            ClientCertificateContext = svid.CertificateContext,
            EnabledSslProtocols = MeshTls.Protocols,
            CipherSuitesPolicy = MeshTls.CipherSuitesPolicy,
            ApplicationProtocols = alpn,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
            {
                verdict = verifier.Verify(certificate as X509Certificate2, chain?.ChainPolicy.ExtraStore, bundle, trustDomain, PeerRole.Server, allowed);
                return verdict.IsValid;
            },
        };

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(MeshTls.HandshakeTimeout);
        try
        {
            await ssl.AuthenticateAsClientAsync(options, timeout.Token);
        }
        catch (AuthenticationException) when (verdict is { IsValid: false } refused)
        {
            throw new UpstreamPeerRefusedException(name, refused);
        }

        if (verdict is not { IsValid: true, SpiffeId: { } proven })
        {
            throw new AuthenticationException($"server {name}: handshake completed without a verified peer"); // cannot happen: the callback runs on every handshake
        }

        foreach (var id in allowed)
        {
            if (id.Equals(proven))
            {
                return id.Value;
            }
        }

        return proven.Value;
    }
}
