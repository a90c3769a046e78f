using MeshProxy.Metrics.Istio;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// One end of a pass-through stream (an upgraded WebSocket, an egress tunnel) that adds every chunk it
/// copies to the stream's Istio TCP counters. <paramref name="downstream"/> says which end it wraps: on
/// the downstream's end reads are bytes received and writes bytes sent; on the upstream's end the other
/// way round. Closing the stream does not close the meter: the owner does, once both directions are done.
/// </summary>
internal sealed class MeteredStream(Stream inner, TcpStreamMeter meter, bool downstream) : Stream
{
    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => inner.CanWrite;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Inbound(inner.Read(buffer, offset, count));

    public override int Read(Span<byte> buffer) => Inbound(inner.Read(buffer));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Inbound(await inner.ReadAsync(buffer, cancellationToken));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        inner.Write(buffer, offset, count);
        Outbound(count);
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        inner.Write(buffer);
        Outbound(buffer.Length);
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await inner.WriteAsync(buffer, cancellationToken);
        Outbound(buffer.Length);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>Bytes read from the wrapped end.</summary>
    private int Inbound(int n)
    {
        if (downstream)
        {
            meter.AddReceived(n);
        }
        else
        {
            meter.AddSent(n);
        }

        return n;
    }

    /// <summary>Bytes written to the wrapped end.</summary>
    private void Outbound(int n)
    {
        if (downstream)
        {
            meter.AddSent(n);
        }
        else
        {
            meter.AddReceived(n);
        }
    }
}
