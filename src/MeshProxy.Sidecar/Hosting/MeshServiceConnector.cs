using System.Net;
using System.Net.Sockets;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.ExternalAuthorization;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>
/// Connections to a mesh service outside the request path (the CUSTOM action's provider): the service is looked up
/// in the current snapshot by host and port, an endpoint is picked by its cluster's load balancer, and the
/// connection is secured by <see cref="UpstreamTls"/> as any outbound mTLS connection is (this sidecar's SVID, the
/// endpoint's expected identities, the handshake counters), offering h2 for gRPC. It lives with the composition root
/// because it joins ExternalAuthorization's need to Forwarding's mTLS and the snapshot, and Forwarding already sits
/// below Configuration, which builds ExternalAuthorization's providers.
/// </summary>
internal sealed class MeshServiceConnector(SnapshotStore snapshots, SidecarIdentity identity, UpstreamTls tls, TimeProvider time) : IMeshServiceConnector
{
    public bool IsMeshService(string host, int port) =>
        identity.Enabled && Resolve(snapshots.Current, host, port) is { } cluster && cluster.Endpoints.Any(e => e.Identity is not null);

    public async ValueTask<Stream> ConnectAsync(string host, int port, CancellationToken cancellationToken)
    {
        if (Resolve(snapshots.Current, host, port) is not { } cluster)
        {
            throw new HttpRequestException($"{host}:{port} is no longer a mesh service");
        }

        if (cluster.Picker.Pick(HealthTime.Milliseconds(time)) is not { Identity: not null } endpoint)
        {
            throw new HttpRequestException($"mesh service {host}:{port} has no sidecar endpoint");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(cluster.Policy.ConnectTimeout);
            var target = new DnsEndPoint(endpoint.Address, endpoint.Port);
            await socket.ConnectAsync(target, timeout.Token);
            var (stream, _) = await tls.ConnectTcpAsync(new NetworkStream(socket, ownsSocket: true), target, cancellationToken, MeshTls.OutboundAlpnHttp2);
            return stream;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static Cluster? Resolve(SidecarSnapshot snapshot, string host, int port) =>
        snapshot.Services.TryResolve(host, port, out var virtualHost) ? virtualHost!.DefaultCluster : null;
}
