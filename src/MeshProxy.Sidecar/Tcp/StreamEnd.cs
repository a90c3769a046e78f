using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace MeshProxy.Sidecar.Tcp;

/// <summary>
/// One side of a spliced TCP stream: where its bytes are read, where bytes for it are written, and how its write
/// direction is closed alone (a half-close), so that a peer that finishes sending before it finishes reading
/// (a client's shutdown(SHUT_WR), an SMTP QUIT) is seen the same way on the other side.
/// </summary>
internal sealed class StreamEnd(Stream read, Stream write, Func<ValueTask> closeWrite, IAsyncDisposable? owned = null) : IAsyncDisposable
{
    public Stream Read { get; } = read;

    public Stream Write { get; } = write;

    /// <summary>Ends this side's write direction: a FIN on a socket, TLS close_notify on an mTLS stream.</summary>
    public ValueTask CloseWriteAsync() => closeWrite();

    /// <summary>
    /// A connection Kestrel accepted. Reads drain its transport pipe (so bytes a detection looked at come first);
    /// writes go straight to its socket, whose send direction can then be shut alone. Kestrel's own output pipe has
    /// no half-close: completing it closes the socket both ways.
    /// </summary>
    public static StreamEnd OfConnection(ConnectionContext connection)
    {
        var input = connection.Transport.Input.AsStream(leaveOpen: true);
        if (connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket)
        {
            return new StreamEnd(input, new SocketWriter(socket), () =>
            {
                ShutdownSend(socket);
                return ValueTask.CompletedTask;
            });
        }

        var output = connection.Transport.Output;
        return new StreamEnd(input, output.AsStream(leaveOpen: true), () => output.CompleteAsync());
    }

    /// <summary>An mTLS stream between sidecars: the half-close is TLS close_notify, which TLS 1.3 lets each side send alone.</summary>
    public static StreamEnd OfTls(SslStream ssl) => new(ssl, ssl, () => new ValueTask(ssl.ShutdownAsync()), ssl);

    /// <summary>A plaintext socket this sidecar opened (to its app, or to a non-mesh endpoint); owned and closed with the end.</summary>
    public static StreamEnd OfSocket(Socket socket)
    {
        var stream = new NetworkStream(socket, ownsSocket: true);
        return new StreamEnd(stream, stream, () =>
        {
            ShutdownSend(socket);
            return ValueTask.CompletedTask;
        }, stream);
    }

    public ValueTask DisposeAsync() => owned?.DisposeAsync() ?? ValueTask.CompletedTask;

    private static void ShutdownSend(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already reset or closed: nothing left to tell the peer.
        }
    }

    /// <summary>
    /// Writes straight to a socket Kestrel owns. Not a NetworkStream, whose constructor refuses a socket that .NET
    /// marked not connected after a cancelled operation (Kestrel's own receive, once a first-bytes wait timed out),
    /// although the connection is open.
    /// </summary>
    private sealed class SocketWriter(Socket socket) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (!buffer.IsEmpty)
            {
                var sent = await socket.SendAsync(buffer, SocketFlags.None, cancellationToken);
                buffer = buffer[sent..];
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count).GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
