using MeshProxy.Metrics.Istio;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// One end of a pass-through stream (an upgraded WebSocket, an egress tunnel) that adds every chunk it
/// copies to the stream's Istio TCP counters. <paramref name="downstream"/> says which end it wraps: on
/// the downstream's end reads are bytes received and writes bytes sent; on the upstream's end the other
/// way round. Closing the stream does not close the meter: the owner does, once both directions are done.
/// </summary>
internal sealed class MeteredStream(Stream inner, TcpStreamMeter meter, bool downstream)
    : DelegatingStream(inner, leaveOpen: false)
{
    public override int Read(byte[] buffer, int offset, int count) => Inbound(Inner.Read(buffer, offset, count));

    public override int Read(Span<byte> buffer) => Inbound(Inner.Read(buffer));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Inbound(await Inner.ReadAsync(buffer, cancellationToken));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        Inner.Write(buffer, offset, count);
        Outbound(count);
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Inner.Write(buffer);
        Outbound(buffer.Length);
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await Inner.WriteAsync(buffer, cancellationToken);
        Outbound(buffer.Length);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

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
