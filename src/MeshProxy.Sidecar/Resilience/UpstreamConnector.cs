using System.Diagnostics;
using System.Net.Http;
using System.Net.Sockets;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The outbound connection factory (SocketsHttpHandler.ConnectCallback). A handler's own limit is per
/// endpoint, so the connector applies what is per cluster: it reads the request's cluster and endpoint
/// (set by <see cref="RequestAttempts.PrepareRequest"/>), waits for a slot under the cluster's
/// connection limit, connects within the cluster's connect timeout, and counts the connection until its
/// stream is disposed.
/// </summary>
internal static class UpstreamConnector
{
    public static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var options = context.InitialRequestMessage.Options;
        options.TryGetValue(RequestAttempts.ClusterOption, out var cluster);
        options.TryGetValue(RequestAttempts.EndpointOption, out var endpoint);
        var timeout = cluster?.Policy.ConnectTimeout ?? ClusterPolicy.DefaultConnectTimeout;
        var started = Stopwatch.GetTimestamp();
        var state = cluster?.State;
        var health = state is null ? null : endpoint?.Health;
        if (state is not null)
        {
            var limit = cluster!.Policy.Limits.MaxConnections;
            if (health is not null && health.TryOpenFirstConnection())
            {
                // As Envoy: an endpoint without any connection always gets one, even over the cluster's
                // limit, or requests picked for it would wait for slots other endpoints' idle connections hold.
                state.Connections.EnterAnyway();
            }
            else if (await state.Connections.EnterAsync(limit, int.MaxValue, timeout, cancellationToken) == GateResult.Entered)
            {
                health?.OpenConnection();
            }
            else
            {
                // No slot freed up within the connect timeout: the request that needed this connection, if
                // it is still waiting for it, fails with UO.
                throw new UpstreamOverflowException(cluster.Name, limit);
            }
        }

        Socket socket;
        try
        {
            socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        }
        catch (SocketException ex)
        {
            // Out of descriptors or buffers here: this sidecar's own failure, not the endpoint's.
            state?.Connections.Exit();
            health?.CloseConnection();
            throw new Forwarding.OwnFailureException("cannot open a socket: " + ex.Message, ex);
        }

        try
        {
            using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var left = timeout - Stopwatch.GetElapsedTime(started);
            timer.CancelAfter(left > TimeSpan.Zero ? left : TimeSpan.Zero);
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, timer.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Envoy's connect timeout is a connect failure (UF), retriable as one.
                throw new SocketException((int)SocketError.TimedOut);
            }

            return new CountedStream(socket, state, health);
        }
        catch
        {
            socket.Dispose();
            state?.Connections.Exit();
            health?.CloseConnection();
            throw;
        }
    }

    /// <summary>A connection that gives its slot back once, when the pool lets it go.</summary>
    private sealed class CountedStream(Socket socket, ClusterState? state, EndpointHealth? health) : NetworkStream(socket, ownsSocket: true)
    {
        private int _closed;

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0)
            {
                state?.Connections.Exit();
                health?.CloseConnection();
            }

            base.Dispose(disposing);
        }
    }
}
