using System.Net.Http;
using System.Net.Sockets;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The outbound connection factory (SocketsHttpHandler.ConnectCallback). One handler serves every
/// destination, so its own ConnectTimeout and MaxConnectionsPerServer cannot be per destination; the
/// connector reads the request's cluster (set by <see cref="RequestAttempts.PrepareRequest"/>) and
/// applies that cluster's connect timeout and connection limit, counting each connection until its
/// stream is disposed.
/// </summary>
internal static class UpstreamConnector
{
    public static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        context.InitialRequestMessage.Options.TryGetValue(RequestAttempts.ClusterOption, out var cluster);
        var timeout = cluster?.Policy.ConnectTimeout ?? ClusterPolicy.DefaultConnectTimeout;
        var state = cluster?.State;
        if (state is not null && !state.TryOpenConnection(cluster!.Policy.Limits.MaxConnections))
        {
            // Refused rather than queued: the request that needed this connection may still be served
            // by a connection that frees up meanwhile; if not, it fails with UO.
            throw new UpstreamOverflowException(cluster.Name, cluster.Policy.Limits.MaxConnections);
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timer.CancelAfter(timeout);
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, timer.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Envoy's connect timeout is a connect failure (UF), retriable as one.
                throw new SocketException((int)SocketError.TimedOut);
            }

            return new CountedStream(socket, state);
        }
        catch
        {
            socket.Dispose();
            state?.CloseConnection();
            throw;
        }
    }

    /// <summary>A connection that gives its slot back once, when the pool lets it go.</summary>
    private sealed class CountedStream(Socket socket, ClusterState? state) : NetworkStream(socket, ownsSocket: true)
    {
        private int _closed;

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0)
            {
                state?.CloseConnection();
            }

            base.Dispose(disposing);
        }
    }
}
