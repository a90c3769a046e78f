using System.Buffers;
using System.Net.Http;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// Istio's <c>connectionPool.http.maxRequestsPerConnection</c> on HTTP/1.1 upstream connections.
/// SocketsHttpHandler has no such setting and never says which pooled connection a request got, so the
/// cluster's handler wraps each HTTP/1.1 connection (its PlaintextStreamFilter: above TLS, below HTTP)
/// in a <see cref="LimitedStream"/> that tells requests apart by the attempt mark the forwarder sets
/// (<see cref="MarkAttempt"/>, an AsyncLocal that flows into the handler's writes and reads for that
/// request). The Nth request's head, written by the handler as the prefix of its first write, gets
/// <c>Connection: close</c> spliced in: the server closes after that response and says so
/// (<c>Connection: close</c> back, RFC 9112 9.6), and the handler, seeing it, disposes the connection
/// instead of pooling it — so no request is ever sent on a connection that is about to close.
/// HTTP/2 connections are limited differently (Forwarding/HandlerGenerations.cs); see Resilience/README.md.
/// </summary>
internal static class RequestsPerConnection
{
    private static readonly AsyncLocal<object?> Attempt = new();

    /// <summary>
    /// Marks the code that follows, in this async flow, as a new request attempt: the next write it
    /// makes on a limited connection starts a request. Called once per attempt, and only for clusters
    /// with the limit (it costs an allocation and an execution-context change).
    /// </summary>
    public static void MarkAttempt() => Attempt.Value = new object();

    /// <summary>One HTTP/1.1 connection's stream, counting the requests written on it.</summary>
    internal sealed class LimitedStream(Stream inner, int limit) : DelegatingStream(inner, leaveOpen: false)
    {
        private static ReadOnlySpan<byte> CloseHeader => "Connection: close\r\n"u8;

        private object? _current; // the attempt mark of the request being written or read now
        private int _requests;

        public int Requests => Volatile.Read(ref _requests);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            StartsRequest() && Volatile.Read(ref _requests) >= limit
                ? WriteClosingAsync(buffer, cancellationToken)
                : Inner.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (StartsRequest() && Volatile.Read(ref _requests) >= limit)
            {
                WriteClosingAsync(buffer.ToArray(), CancellationToken.None).AsTask().GetAwaiter().GetResult();
                return;
            }

            Inner.Write(buffer);
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Exhausted()
                ? ValueTask.FromResult(0)
                : Inner.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(Span<byte> buffer) => Exhausted() ? 0 : Inner.Read(buffer);

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        /// <summary>
        /// True on the first write of an attempt not seen before: the handler writes one request at a time
        /// on an HTTP/1.1 connection, and a request's head (buffered whole) is the start of its first write.
        /// </summary>
        private bool StartsRequest()
        {
            var mark = Attempt.Value;
            if (mark is null || ReferenceEquals(mark, Volatile.Read(ref _current)))
            {
                return false;
            }

            Volatile.Write(ref _current, mark);
            Interlocked.Increment(ref _requests);
            return true;
        }

        /// <summary>
        /// A read by anyone but the last request, once the limit is reached: the handler's read-ahead when it
        /// takes the connection out of the pool, or its idle scan. Seeing end of stream at once, the handler
        /// drops the connection rather than send on it. Only matters for a server that ignored
        /// <c>Connection: close</c> (the handler then pools the connection the server is closing).
        /// </summary>
        private bool Exhausted() =>
            Volatile.Read(ref _requests) >= limit && !ReferenceEquals(Attempt.Value, Volatile.Read(ref _current));

        /// <summary>The request head with <c>Connection: close</c> added before its final empty line, then whatever body followed it.</summary>
        private async ValueTask WriteClosingAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
        {
            var end = buffer.Span.IndexOf("\r\n\r\n"u8);
            if (end < 0)
            {
                // Not a request head after all (cannot happen with SocketsHttpHandler's writes): sent as is;
                // the count stays at the limit, so the next request on this connection asks again.
                await Inner.WriteAsync(buffer, cancellationToken);
                return;
            }

            var split = end + 2;
            var length = buffer.Length + CloseHeader.Length;
            var rented = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                buffer.Span[..split].CopyTo(rented);
                CloseHeader.CopyTo(rented.AsSpan(split));
                buffer.Span[split..].CopyTo(rented.AsSpan(split + CloseHeader.Length));
                await Inner.WriteAsync(rented.AsMemory(0, length), cancellationToken);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}
