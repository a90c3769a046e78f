using System.Diagnostics;
using System.Net.Http;
using System.Net.Sockets;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;

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
            // The system clock, as for the connect below: the connector only ever makes real sockets.
            else if (await state.Connections.EnterAsync(limit, int.MaxValue, timeout, TimeProvider.System, cancellationToken) == GateResult.Entered)
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
            throw new Telemetry.OwnFailureException("cannot open a socket: " + ex.Message, ex);
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

            return new CountedStream(socket, state, health, context.InitialRequestMessage.Version.Major == 1);
        }
        catch
        {
            socket.Dispose();
            state?.Connections.Exit();
            health?.CloseConnection();
            throw;
        }
    }

    /// <summary>
    /// A connection that gives its slot back once, when the pool lets it go; on HTTP/1.1, also the proof that
    /// a request was never sent. An HTTP/1.1 client writes one request at a time and reads its response
    /// before writing the next (SocketsHttpHandler even reads ahead before reusing a pooled connection), so the
    /// first write after a read (or the connection's first write at all) starts a request. If the upstream has
    /// closed the connection by then (end of stream or a reset pending on the socket: a server closing an idle
    /// keep-alive connection, a draining peer) the write is refused with <see cref="UnsentRequestException"/>
    /// without a byte going out, and so is every later one. A request that dies that way never reached the
    /// upstream and may be resent whatever its method (ResilientForwarder). A close that arrives after the
    /// first write proves nothing (the upstream may have read the request): that stays an ordinary reset.
    /// </summary>
    private sealed class CountedStream(Socket socket, ClusterState? state, EndpointHealth? health, bool http1) : NetworkStream(socket, ownsSocket: true)
    {
        private int _closed;
        private int _reads;
        private int _readsAtLastWrite = -1;
        private bool _refused;

        public override int Read(byte[] buffer, int offset, int count)
        {
            _reads++;
            return base.Read(buffer, offset, count);
        }

        public override int Read(Span<byte> buffer)
        {
            _reads++;
            return base.Read(buffer);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            _reads++;
            return base.ReadAsync(buffer, offset, count, cancellationToken);
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _reads++;
            return base.ReadAsync(buffer, cancellationToken);
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            ThrowIfUnsent();
            base.Write(buffer, offset, count);
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            ThrowIfUnsent();
            base.Write(buffer);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            ThrowIfUnsent();
            return base.WriteAsync(buffer, offset, count, cancellationToken);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            ThrowIfUnsent();
            return base.WriteAsync(buffer, cancellationToken);
        }

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0)
            {
                state?.Connections.Exit();
                health?.CloseConnection();
            }

            base.Dispose(disposing);
        }

        /// <summary>Reads and writes of one HTTP/1.1 connection never overlap in a way that matters here: plain fields do.</summary>
        private void ThrowIfUnsent()
        {
            if (!http1)
            {
                return;
            }

            if (_refused)
            {
                throw new UnsentRequestException();
            }

            var reads = _reads;
            if (reads == _readsAtLastWrite)
            {
                return; // a later write of the same request: its start already went out
            }

            _readsAtLastWrite = reads;
            if (PeerClosed())
            {
                _refused = true;
                throw new UnsentRequestException();
            }
        }

        /// <summary>
        /// The kernel's view, not a read's: readable with nothing to read is end of stream (or an error) already
        /// received, even when a read-ahead that will report it has not run yet. One poll per request.
        /// </summary>
        private bool PeerClosed()
        {
            try
            {
                return Socket.Poll(0, SelectMode.SelectRead) && Socket.Available == 0;
            }
            catch (SocketException)
            {
                return true; // a reset is pending
            }
        }
    }
}
