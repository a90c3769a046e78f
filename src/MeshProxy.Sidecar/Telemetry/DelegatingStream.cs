namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The pass-through part of a stream layer: every read, write and flush goes to <see cref="Inner"/>, each
/// overload to the inner stream's same overload, so a layer costs nothing where it changes nothing (Stream's
/// own defaults would rent arrays or queue work to the thread pool).
/// A layer overrides only what it changes, but then every overload of it: the four reads (byte[] and Span,
/// sync and async) or the four writes, since the array forms here go straight to the inner stream rather
/// than through the span and memory forms. What Stream builds on those (CopyTo, CopyToAsync, ReadByte,
/// WriteByte, Begin/End) is left to Stream, so it goes through a layer's reads and writes too; timeouts are
/// not passed on (no layer has needed them). Layers wrap connections and bodies as they flow: none can seek.
/// It lives in Telemetry, the lowest folder with layers of its own (the bodies and tunnels it counts), so that
/// the layers of the upstream send above it (requests per connection, the server's stream limit) can use it too.
/// </summary>
/// <param name="inner">The stream every member passes to.</param>
/// <param name="leaveOpen">True when <paramref name="inner"/> belongs to someone else: disposing the layer then leaves it open.</param>
internal abstract class DelegatingStream(Stream inner, bool leaveOpen) : Stream
{
    public Stream Inner { get; } = inner;

    public override bool CanRead => Inner.CanRead;

    public override bool CanWrite => Inner.CanWrite;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Inner.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => Inner.Read(buffer);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Inner.ReadAsync(buffer, offset, count, cancellationToken);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Inner.ReadAsync(buffer, cancellationToken);

    public override void Write(byte[] buffer, int offset, int count) => Inner.Write(buffer, offset, count);

    public override void Write(ReadOnlySpan<byte> buffer) => Inner.Write(buffer);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Inner.WriteAsync(buffer, offset, count, cancellationToken);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        Inner.WriteAsync(buffer, cancellationToken);

    public override void Flush() => Inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => Inner.FlushAsync(cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    // Stream's DisposeAsync would dispose the inner stream synchronously, through Dispose(bool); the inner
    // stream's own DisposeAsync is the one that may close it asynchronously. Left open, it is Stream's
    // (Dispose(true), which then releases nothing). No derived layer holds anything of its own to release;
    // one that ever does overrides this too.
    public override ValueTask DisposeAsync() => leaveOpen ? base.DisposeAsync() : Inner.DisposeAsync();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !leaveOpen)
        {
            Inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
