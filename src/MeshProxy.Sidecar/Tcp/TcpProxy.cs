using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using MeshProxy.Authorization;
using MeshProxy.Metrics.Istio;
using MeshProxy.Sidecar.Authorization;
using MeshProxy.Sidecar.ExternalAuthorization;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Runtime;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tcp;

/// <summary>
/// Mesh traffic that is not HTTP, proxied as a byte stream (Tcp/README.md). Outbound: a captured connection to a
/// mesh service's TCP port goes to one endpoint of the service, over mTLS with the TCP ALPN when the endpoint runs a
/// sidecar, under the cluster's connection limit and connect timeout. Inbound: a connection that arrived as such a
/// stream (or as plaintext on a TCP port a PERMISSIVE or DISABLE mode lets through) is authorized by principal,
/// namespace, source address and port (a CUSTOM policy's provider asked first, once per connection), then spliced
/// to the app's port. Both report Istio's TCP metrics with the
/// peer's labels, exchanged in-band (<see cref="PeerPreamble"/>).
/// </summary>
internal sealed class TcpProxy(
    RuntimeStore runtimes, SidecarIdentity identity, UpstreamTls upstreamTls, ExternalAuthorizer external, SidecarTelemetry telemetry, TimeProvider time, ILogger<TcpProxy> logger)
{
    // Inbound TCP streams open now (authorized and under the limit), for the Sidecar's inbound maxConnections.
    private int _inboundStreams;

    /// <summary>Outbound: a captured connection whose original destination is <paramref name="service"/>'s TCP port.</summary>
    public async Task OutboundAsync(ConnectionContext connection, RuntimeSnapshot runtime, VirtualHost service)
    {
        // Route rules match HTTP requests; a byte stream goes to the port's own cluster.
        var cluster = service.DefaultCluster;
        var labels = runtime.Labels;
        var limit = cluster.Policy.Limits.MaxConnections;
        if (!cluster.State.Connections.TryEnter(limit))
        {
            logger.ConnectionOverflow(cluster.Name, limit);
            cluster.State.Stats.Overflowed(); // meshproxy_upstream_overflow_total, as an HTTP request refused UO
            Refused(labels.Outbound(cluster, null, null), PeerTelemetry.SourceSecurityPolicy, ResponseFlags.UpstreamOverflow);
            connection.Abort();
            return;
        }

        StreamEnd? upstream = null;
        try
        {
            var endpoint = cluster.Picker.Pick(HealthTime.Milliseconds(time));
            if (endpoint is null)
            {
                logger.NoEndpoint(cluster.Name);
                Refused(labels.Outbound(cluster, null, null), PeerTelemetry.SourceSecurityPolicy, ResponseFlags.NoHealthyUpstream);
                connection.Abort();
                return;
            }

            using var setup = CancellationTokenSource.CreateLinkedTokenSource(CloseRequested(connection));
            var peer = PeerFrame.Unknown;
            string? principal = null;
            endpoint.Health.OpenConnection();
            try
            {
                var socket = await ConnectAsync(endpoint.Address, endpoint.Port, cluster.Policy.ConnectTimeout, setup.Token);
                if (endpoint.Identity is not null && identity.Enabled)
                {
                    setup.CancelAfter(MeshTls.HandshakeTimeout);
                    var (ssl, proven) = await upstreamTls.ConnectTcpAsync(new NetworkStream(socket, ownsSocket: true), new DnsEndPoint(endpoint.Address, endpoint.Port), setup.Token);
                    upstream = StreamEnd.OfTls(ssl);
                    principal = proven;
                    await PeerPreamble.WriteAsync(ssl, labels.PeerHeader, setup.Token);
                    peer = await PeerPreamble.ReadAsync(ssl, setup.Token);
                    if (peer.IsDenied)
                    {
                        logger.DeniedByDestination(cluster.Name, endpoint.Key, principal);
                        Refused(labels.Outbound(cluster, null, principal), PeerTelemetry.SourceSecurityPolicy, ResponseFlags.UpstreamDenied);
                        connection.Abort();
                        return;
                    }
                }
                else
                {
                    upstream = StreamEnd.OfSocket(socket);
                }
            }
            catch (Exception ex) when (Splice.IsStreamFailure(ex) || ex is OwnFailureException or InvalidDataException or EndOfStreamException)
            {
                // An inbound sidecar that predates the denial frame closes a denied stream before its metadata: that lands here.
                logger.UpstreamConnectFailed(cluster.Name, endpoint.Key, ex.Message);
                Refused(labels.Outbound(cluster, null, principal), PeerTelemetry.SourceSecurityPolicy, ResponseFlags.UpstreamConnectionFailure);
                connection.Abort();
                return;
            }
            finally
            {
                endpoint.Health.CloseConnection();
            }

            var meter = telemetry.Istio.OpenTcpStream(new TcpLabels
            {
                Workload = labels.Outbound(cluster, peer.Metadata, principal),
                ConnectionSecurityPolicy = PeerTelemetry.SourceSecurityPolicy,
            });
            await SpliceAsync(connection, StreamEnd.OfConnection(connection), upstream, meter, cluster.Policy.TcpIdleTimeout, cluster.Name);
        }
        finally
        {
            if (upstream is not null)
            {
                await upstream.DisposeAsync();
            }

            cluster.State.Connections.Exit();
        }
    }

    /// <summary>
    /// Inbound: a stream to this workload's <paramref name="port"/>, over mTLS (<paramref name="tls"/>, with the
    /// peer it proved) or plaintext (both null) where the port's mode allows it.
    /// </summary>
    public async Task InboundAsync(ConnectionContext connection, SslStream? tls, PeerIdentity? peer, int port)
    {
        var runtime = runtimes.Current;
        var snapshot = runtime.Snapshot;
        var labels = runtime.Labels;
        var security = PeerTelemetry.SecurityPolicy(peer);
        if (snapshot.Provisional)
        {
            // As for HTTP: nothing is judged by the empty policy set of the placeholder snapshot.
            Refused(labels.Inbound(null, peer, null), security, ResponseFlags.NoRoute);
            connection.Abort();
            return;
        }

        var remote = (connection.RemoteEndPoint as IPEndPoint)?.Address;
        var request = AuthorizationRequest.ForConnection(peer?.Principal, remote, port, peer?.ServerName);

        // CUSTOM first, as for HTTP and as Envoy's network ext_authz filter sits before its RBAC filter: the provider
        // is asked once for the connection, before any byte moves (ExternalAuthorization/README.md).
        if (snapshot.Authorization.MatchCustom(request) is { } custom &&
            !await external.CheckConnectionAsync(snapshot.ExternalAuthorization, request, custom,
                connection.RemoteEndPoint as IPEndPoint, (connection.LocalEndPoint as IPEndPoint)?.Address, CloseRequested(connection)))
        {
            Refused(labels.Inbound(null, peer, null), security, ResponseFlags.UnauthorizedExternalService);
            await CloseDeniedAsync(tls, connection);
            return;
        }

        var decision = snapshot.Authorization.Evaluate(request);
        InboundAuthorization.ReportConnection(telemetry.Proxy, logger, request, decision);
        if (!decision.Allowed)
        {
            Refused(labels.Inbound(null, peer, null), security, ResponseFlags.None);
            await CloseDeniedAsync(tls, connection);
            return;
        }

        // The Sidecar's inboundConnectionPool.tcp.maxConnections: past it a stream is refused before the app is dialled,
        // as the outbound side refuses one over its cluster's limit. Counted across snapshots, so a reload neither
        // forgets open streams nor lets more in.
        var app = snapshot.InboundCluster;
        var limit = snapshot.Sidecar.Spec.InboundMaxConnections;
        if (Interlocked.Increment(ref _inboundStreams) > (limit ?? int.MaxValue))
        {
            Interlocked.Decrement(ref _inboundStreams);
            logger.ConnectionOverflow(app.Name, limit!.Value);
            app.State.Stats.Overflowed(); // meshproxy_upstream_overflow_total{cluster="inbound|<port>||"}
            Refused(labels.Inbound(null, peer, null), security, ResponseFlags.UpstreamOverflow);
            connection.Abort();
            return;
        }

        try
        {
            await ToAppAsync(connection, tls, peer, port, runtime, app, security);
        }
        finally
        {
            Interlocked.Decrement(ref _inboundStreams);
        }
    }

    /// <summary>Inbound, once authorized and under the limit: the metadata exchange, the app dialled, the splice.</summary>
    private async Task ToAppAsync(ConnectionContext connection, SslStream? tls, PeerIdentity? peer, int port, RuntimeSnapshot runtime, Cluster app, string security)
    {
        var labels = runtime.Labels;
        StreamEnd? upstream = null;
        var metadata = PeerFrame.Unknown;
        try
        {
            using var setup = CancellationTokenSource.CreateLinkedTokenSource(CloseRequested(connection));
            setup.CancelAfter(MeshTls.HandshakeTimeout);
            if (tls is not null)
            {
                await PeerPreamble.WriteAsync(tls, labels.PeerHeader, setup.Token);
                metadata = await PeerPreamble.ReadAsync(tls, setup.Token);
            }

            upstream = StreamEnd.OfSocket(await ConnectAsync(app.Endpoints[0].Address, port, app.Policy.ConnectTimeout, setup.Token));
        }
        catch (Exception ex) when (Splice.IsStreamFailure(ex) || ex is InvalidDataException or EndOfStreamException)
        {
            logger.UpstreamConnectFailed(app.Name, $"{app.Endpoints[0].Address}:{port}", ex.Message);
            Refused(labels.Inbound(null, peer, metadata.Metadata), security, ResponseFlags.UpstreamConnectionFailure);
            if (upstream is not null)
            {
                await upstream.DisposeAsync();
            }

            connection.Abort();
            return;
        }

        await using (upstream)
        {
            var meter = telemetry.Istio.OpenTcpStream(new TcpLabels { Workload = labels.Inbound(null, peer, metadata.Metadata), ConnectionSecurityPolicy = security });
            var downstream = tls is null ? StreamEnd.OfConnection(connection) : StreamEnd.OfTls(tls);
            await SpliceAsync(connection, downstream, upstream, meter, app.Policy.TcpIdleTimeout, app.Name);
        }
    }

    private async Task SpliceAsync(ConnectionContext connection, StreamEnd downstream, StreamEnd upstream, TcpStreamMeter meter, TimeSpan idleTimeout, string cluster)
    {
        // The listener stopping (the end of a drain, shutdown) asks its connections to close: a byte stream has no
        // notice to give between requests, so it ends then, as Envoy's TCP proxy does when its listener is drained.
        // Not ConnectionClosed: Kestrel fires it when the client's side ends, which for a stream is a half-close (its
        // reply may still be coming), even before the stream is set up (a client may send its request and its end at
        // once); a client that is really gone fails the splice's reads and writes.
        try
        {
            var outcome = await Splice.RunAsync(downstream, upstream, meter, idleTimeout, time, CloseRequested(connection));
            if (outcome == Splice.Outcome.IdleTimeout)
            {
                logger.IdleTimeout(cluster, idleTimeout.TotalSeconds);
            }
        }
        finally
        {
            meter.Close();
        }
    }

    /// <summary>
    /// Envoy's RBAC and ext_authz network filters: a denied connection is closed before a byte reaches the app or the
    /// app's first byte (a banner) reaches the caller. A calling sidecar is told why first, in place of our metadata,
    /// so that it records a denial rather than a connect failure.
    /// </summary>
    private static async Task CloseDeniedAsync(SslStream? tls, ConnectionContext connection)
    {
        if (tls is not null && await TellDeniedAsync(tls, connection))
        {
            return; // Kestrel closes the connection once what was written has been sent
        }

        connection.Abort();
    }

    /// <summary>
    /// The denial frame, then TLS close_notify. The caller's own frame (which it writes before reading ours) is read
    /// first, so that no unread byte turns the close into a reset that could destroy the denial in flight; the
    /// connection is then closed gracefully, not aborted, for the same reason. False when the caller could not be told
    /// within the handshake timeout.
    /// </summary>
    private static async Task<bool> TellDeniedAsync(SslStream tls, ConnectionContext connection)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(CloseRequested(connection));
        timeout.CancelAfter(MeshTls.HandshakeTimeout);
        try
        {
            await PeerPreamble.ReadAsync(tls, timeout.Token);
            await PeerPreamble.WriteDeniedAsync(tls, timeout.Token);
            await tls.ShutdownAsync().WaitAsync(timeout.Token);
            return true;
        }
        catch (Exception ex) when (Splice.IsStreamFailure(ex) || ex is InvalidDataException or EndOfStreamException)
        {
            // The caller went away first, or is not a sidecar speaking this protocol: nothing to tell it.
            return false;
        }
    }

    /// <summary>Fires when the connection's listener stops (<see cref="SpliceAsync"/> says why not ConnectionClosed).</summary>
    private static CancellationToken CloseRequested(ConnectionContext connection) =>
        connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.ConnectionClosedRequested ?? CancellationToken.None;

    /// <summary>A stream that ended before it began: counted opened and closed with the flag that says why.</summary>
    private void Refused(IstioWorkloadLabels workload, string security, ResponseFlags flags) =>
        telemetry.Istio.OpenTcpStream(new TcpLabels { Workload = workload, ConnectionSecurityPolicy = security, ResponseFlags = flags == ResponseFlags.None ? null : flags.ToCode() }).Close();

    private static async Task<Socket> ConnectAsync(string address, int port, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timer.CancelAfter(timeout);
            await socket.ConnectAsync(IPAddress.TryParse(address, out var ip) ? new IPEndPoint(ip, port) : new DnsEndPoint(address, port), timer.Token);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
