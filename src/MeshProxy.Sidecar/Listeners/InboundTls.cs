using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// Mutual TLS on the inbound listener, as a Kestrel connection middleware running SslStream itself.
/// Kestrel's own UseHttps needs its HTTPS configuration service, which only the WebApplication/WebHost
/// builders register; doing the handshake here instead keeps the listener a plain KestrelServer and gives
/// us what UseHttps would not: the mode per port (PeerAuthentication: STRICT, PERMISSIVE, DISABLE) applied to what the
/// client opened with (<see cref="InboundDetection"/>), the SVID picked per handshake from the store, the mesh
/// verifier's reason for every refusal, and the peer's SPIFFE ID set once per connection.
/// Kestrel then sees an ordinary TLS connection: ITlsConnectionFeature (scheme https, client certificate)
/// and ITlsApplicationProtocolFeature (ALPN h2 or http/1.1, which picks the HTTP/2 or HTTP/1.1 handler).
/// </summary>
internal sealed class InboundTls(
    SidecarIdentity identity, SnapshotStore snapshots, PeerCertificateVerifier verifier, HandshakeRateLimit handshakes, ProxyMetrics metrics,
    Tcp.TcpProxy tcp, TimeProvider time, ILogger logger)
{
    /// <summary>How often a flood of refused handshakes is logged: the count is in the metric, one line says it is happening.</summary>
    private static readonly TimeSpan ShedLogInterval = TimeSpan.FromSeconds(10);

    private long _shedLoggedAt = long.MinValue;
    private long _shedAtLastLog;

    /// <summary>Installs the middleware; it must run before the cleartext HTTP/2 detection.</summary>
    public void Install(ListenOptions listen)
    {
        // A sidecar originating mTLS speaks HTTP/2 over a stream it secured itself (Forwarding/UpstreamTls.cs),
        // so its requests say :scheme http on a TLS connection, which Kestrel would reset. Whether the hop is
        // TLS is known from the connection, not from what the client claims.
        listen.KestrelServerOptions.AllowAlternateSchemes = true;
        listen.Use(next => connection => HandleAsync(connection, next));
    }

    private async Task HandleAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var remote = connection.RemoteEndPoint?.ToString() ?? "unknown";
        var port = connection.Features.Find<OriginalDestinationFeature>()?.EndPoint.Port ?? snapshots.Current.Sidecar.Spec.App.Port;

        // The app's port declared TCP: a plaintext client of a server that speaks first sends nothing, so where
        // plaintext is allowed it is not waited for long (PERMISSIVE), or at all (DISABLE, where TLS is refused anyway).
        var tcpPort = IsTcpPort(snapshots.Current, port);
        var tcpMode = tcpPort ? snapshots.Current.InboundMtls.For(port).Mode : MtlsMode.Strict;
        var opening = tcpMode == MtlsMode.Disable
            ? InboundOpening.Plaintext
            : await InboundDetection.ReadAsync(connection, tcpMode == MtlsMode.Permissive ? ProtocolSniffing.Window : null, time);
        if (opening == InboundOpening.Nothing && tcpMode != MtlsMode.Permissive)
        {
            connection.Abort();
            return;
        }

        // The mode in force when the client has spoken: a PeerAuthentication change applies to the next connection,
        // and the ones already open keep what they were accepted under.
        var snapshot = snapshots.Current;
        var mtls = snapshot.InboundMtls.For(port);
        switch (opening)
        {
            case InboundOpening.Plaintext or InboundOpening.Nothing when mtls.Mode is MtlsMode.Permissive or MtlsMode.Disable:
                // No peer identity: principal- and namespace-based policy denies these requests (and TCP streams).
                identity.Counters.CountPlaintextAccepted();
                metrics.InboundPlaintextConnection(port, mtls.Mode);
                await (tcpPort ? tcp.InboundAsync(connection, tls: null, peer: null, port) : next(connection));
                return;
            case InboundOpening.Nothing:
                connection.Abort();
                return;
            case InboundOpening.Plaintext:
                identity.Counters.CountPlaintextRefused();
                logger.PlaintextRefused(remote, port, mtls.SetBy);
                connection.Abort();
                return;
            case InboundOpening.Tls when mtls.Mode == MtlsMode.Disable:
                identity.Counters.CountTlsOnDisabledPort();
                logger.TlsRefusedOnDisabledPort(remote, port, mtls.SetBy);
                connection.Abort();
                return;
            case InboundOpening.Malformed:
                identity.Counters.CountInboundHandshakeFailure();
                logger.InboundHandshakeFailed(remote, "not a well-formed TLS ClientHello");
                connection.Abort();
                return;
        }

        if (!handshakes.TryAcquire())
        {
            identity.Counters.CountInboundHandshakeShed();
            LogShed();
            connection.Abort();
            return;
        }

        if (identity.Store.Current is not { } svid || identity.Store.TrustBundle is not { } bundle)
        {
            identity.Counters.CountInboundHandshakeFailure();
            logger.NoSvidYet(remote);
            connection.Abort();
            return;
        }

        await HandshakeAndServeAsync(connection, next, svid, bundle, remote, port);
    }

    /// <summary>The app's port, when the Sidecar declares its protocol TCP (app.protocol).</summary>
    private static bool IsTcpPort(SidecarSnapshot snapshot, int port) =>
        snapshot.Sidecar.Spec.App is { Protocol: AppProtocol.Tcp } app && app.Port == port;

    private async Task HandshakeAndServeAsync(ConnectionContext connection, ConnectionDelegate next, X509Svid svid, TrustBundle bundle, string remote, int port)
    {
        var original = connection.Transport;
        var ssl = new SslStream(new DuplexPipeStream(original), leaveInnerStreamOpen: true);
        var trustDomain = snapshots.Current.Mesh.TrustDomain;
        PeerVerificationResult? verdict = null;
        X509Certificate2? peerCertificate = null;
        var options = new SslServerAuthenticationOptions
        {
            // The SVID current at this handshake: a rotation applies to the next handshake, open connections keep theirs.
            ServerCertificateContext = svid.CertificateContext,
            ClientCertificateRequired = true,
            EnabledSslProtocols = MeshTls.Protocols,
            CipherSuitesPolicy = MeshTls.CipherSuitesPolicy,
            ApplicationProtocols = MeshTls.InboundAlpn,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
            {
                peerCertificate = certificate as X509Certificate2;
                verdict = verifier.Verify(peerCertificate, chain?.ChainPolicy.ExtraStore, bundle, trustDomain, PeerRole.Client);
                return verdict.IsValid;
            },
        };

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
            timeout.CancelAfter(MeshTls.HandshakeTimeout);
            await ssl.AuthenticateAsServerAsync(options, timeout.Token);
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or OperationCanceledException or SocketException or ConnectionResetException or InvalidOperationException)
        {
            if (verdict is { IsValid: false })
            {
                identity.Counters.CountInboundRefused(verdict.Failure);
                logger.InboundPeerRefused(remote, verdict.Failure.ToString(), verdict.Message);
            }
            else
            {
                identity.Counters.CountInboundHandshakeFailure();
                logger.InboundHandshakeFailed(remote, Describe(ex));
            }

            await ssl.DisposeAsync();
            connection.Abort();
            return;
        }

        identity.Counters.CountInboundHandshake();
        // A completed handshake ran the callback with a valid verdict: the client certificate is required.
        var clientCertificate = ssl.RemoteCertificate as X509Certificate2 ?? peerCertificate!;
        var peer = PeerIdentity.Create(verdict!.SpiffeId!, clientCertificate, svid.SpiffeId, ssl.TargetHostName);
        if (ssl.NegotiatedApplicationProtocol == MeshTls.Tcp)
        {
            // A TCP stream from another sidecar (Tcp/README.md): not HTTP, whatever the port says.
            try
            {
                await tcp.InboundAsync(connection, ssl, peer, port);
            }
            finally
            {
                await ssl.DisposeAsync();
            }

            return;
        }

        connection.Features.Put(peer);
        var tls = new TlsFeature(clientCertificate, ssl.NegotiatedApplicationProtocol.Protocol);
        connection.Features.Set<ITlsConnectionFeature>(tls);
        connection.Features.Set<ITlsApplicationProtocolFeature>(tls);

        var input = PipeReader.Create(ssl, new StreamPipeReaderOptions(leaveOpen: true));
        var output = PipeWriter.Create(ssl, new StreamPipeWriterOptions(leaveOpen: true));
        connection.Transport = new DuplexPipe(input, output);
        try
        {
            await next(connection);
        }
        finally
        {
            await input.CompleteAsync();
            await output.CompleteAsync();
            await ssl.DisposeAsync();
            connection.Transport = original;
        }
    }

    private void LogShed()
    {
        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref _shedLoggedAt);
        if ((last != long.MinValue && time.GetElapsedTime(last, now) < ShedLogInterval) || Interlocked.CompareExchange(ref _shedLoggedAt, now, last) != last)
        {
            return;
        }

        var shed = identity.Counters.InboundHandshakesShed;
        logger.HandshakesShed(shed - Interlocked.Exchange(ref _shedAtLastLog, shed), ShedLogInterval.TotalSeconds);
    }

    private static string Describe(Exception ex)
    {
        if (ex is OperationCanceledException)
        {
            return $"no complete handshake within {MeshTls.HandshakeTimeout.TotalSeconds:0}s";
        }

        var innermost = ex;
        while (innermost.InnerException is not null)
        {
            innermost = innermost.InnerException;
        }

        return innermost == ex ? ex.Message : $"{ex.Message} ({innermost.Message})";
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class TlsFeature(X509Certificate2 clientCertificate, ReadOnlyMemory<byte> alpn) : ITlsConnectionFeature, ITlsApplicationProtocolFeature
    {
        public X509Certificate2? ClientCertificate { get; set; } = clientCertificate;

        public ReadOnlyMemory<byte> ApplicationProtocol { get; } = alpn;

        public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult(ClientCertificate);
    }
}
