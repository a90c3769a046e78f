using System.Buffers;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Mirroring;

/// <summary>
/// The request body as the primary send reads it, with a copy of the bytes kept for the mirror while they fit the
/// limit. Nothing is read that the primary does not read, and no read waits on the copy: past the limit the copy is
/// dropped and the reads go on passing through. The copy is whole once the primary has read to the end (or the
/// declared length), which is the only state in which it is taken.
/// </summary>
internal sealed class MirrorBodyTap : DelegatingStream
{
    private readonly long? _declared;
    private readonly int _limit;
    private byte[]? _buffer;
    private int _length;
    private bool _ended;

    public MirrorBodyTap(Stream inner, int limit, long? declared)
        : base(inner, leaveOpen: true)
    {
        _declared = declared;
        _limit = limit;
        _buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(declared ?? limit, limit));
    }

    /// <summary>The whole body, when the primary read all of it and it fit the limit; else false (and the copy is gone).</summary>
    public bool TryTake(out ReadOnlyMemory<byte> body, out byte[]? rented)
    {
        var complete = _ended || (_declared is { } d && _length == d);
        if (_buffer is { } buffer && complete)
        {
            body = buffer.AsMemory(0, _length);
            rented = buffer;
            _buffer = null;
            return true;
        }

        // Not read to the end: the primary may still read (a late body read after an early answer), so the buffer is
        // left to the collector rather than returned to the pool under a writer.
        _buffer = null;
        body = default;
        rented = null;
        return false;
    }

    public override int Read(byte[] buffer, int offset, int count) => Record(buffer.AsSpan(offset, Inner.Read(buffer, offset, count)));

    public override int Read(Span<byte> buffer) => Record(buffer[..Inner.Read(buffer)]);

    public override async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        var read = await Inner.ReadAsync(buffer.AsMemory(offset, count), cancellationToken);
        return Record(buffer.AsSpan(offset, read));
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await Inner.ReadAsync(buffer, cancellationToken);
        return Record(buffer.Span[..read]);
    }

    private int Record(ReadOnlySpan<byte> read)
    {
        if (read.IsEmpty)
        {
            _ended = true;
            return 0;
        }

        if (_buffer is { } buffer)
        {
            if (_length + read.Length > Math.Min(buffer.Length, _limit))
            {
                // Over the limit: the copy is given up, the primary reads on as if the tap were not there.
                _buffer = null;
            }
            else
            {
                read.CopyTo(buffer.AsSpan(_length));
                _length += read.Length;
            }
        }

        return read.Length;
    }
}
