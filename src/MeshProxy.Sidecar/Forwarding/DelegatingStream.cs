namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// The pass-through half of a stream layer: every read, write and flush goes to <see cref="Inner"/>,
/// each overload to the inner stream's same overload, so that a layer that changes nothing in one
/// direction costs nothing there (Stream's own defaults would rent arrays or queue work). A derived
/// layer overrides only what it changes, and then every overload of that kind (Read(byte[]...),
/// Read(Span), ReadAsync(byte[]...), ReadAsync(Memory), or the four writes): the array forms here go
/// straight to the inner stream, not through the span and memory forms. Members that Stream builds on
/// those (CopyTo, CopyToAsync, ReadByte, WriteByte, Begin/End) are left to Stream, so they go through a
/// layer's reads and writes too; timeouts are not passed on (no layer has needed them). The layers wrap
/// connections and bodies as they flow, so none can seek.
/// It lives in Forwarding because what it wraps is what the sidecar forwards: the upstream connections
/// this folder's transport hands to Resilience's layers, and the bodies and tunnels Telemetry counts.
/// </summary>
internal abstract class DelegatingStream : Stream
{
    private readonly bool _leaveOpen;

    /// <param name="inner">The stream every member passes to.</param>
    /// <param name="leaveOpen">True when disposing this layer must not dispose <paramref name="inner"/>,
    /// which belongs to someone else.</param>
    protected DelegatingStream(Stream inner, bool leaveOpen)
    {
        Inner = inner;
        _leaveOpen = leaveOpen;
    }

    public Stream Inner { get; }

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
    public override ValueTask DisposeAsync() => _leaveOpen ? base.DisposeAsync() : Inner.DisposeAsync();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_leaveOpen)
        {
            Inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
