
namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Counts the bytes of a body whose length was not declared (chunked HTTP/1.1, HTTP/2 streams such as
/// gRPC). Declared lengths are taken from Content-Length instead, which Kestrel enforces, so this one
/// small object is allocated only for bodies of unknown length. Disposing it leaves the body open: the
/// body belongs to Kestrel (or to the response feature it counts for), not to this counter.
/// </summary>
internal sealed class CountingStream(Stream inner) : DelegatingStream(inner, leaveOpen: true)
{
    private long _count;

    public long Count => Volatile.Read(ref _count);

    public override int Read(byte[] buffer, int offset, int count) => Counted(Inner.Read(buffer, offset, count));

    public override int Read(Span<byte> buffer) => Counted(Inner.Read(buffer));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Counted(await Inner.ReadAsync(buffer, cancellationToken));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        Inner.Write(buffer, offset, count);
        Counted(count);
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Inner.Write(buffer);
        Counted(buffer.Length);
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await Inner.WriteAsync(buffer, cancellationToken);
        Counted(buffer.Length);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int Counted(int n)
    {
        Interlocked.Add(ref _count, n);
        return n;
    }
}
