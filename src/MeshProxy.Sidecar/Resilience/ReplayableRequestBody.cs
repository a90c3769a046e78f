using System.Buffers;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The request body as it streams to the first attempt, with what passes kept (up to
/// <see cref="Limit"/>) so that a retry can send it again. Nothing waits for the body: the first
/// attempt reads through this as it would read the original. A body that outgrows the limit, or whose
/// read from the caller failed, cannot be replayed, and its request is not retried.
/// </summary>
internal sealed class ReplayableRequestBody(Stream inner) : Stream
{
    /// <summary>linkerd's cap on a replayable body.</summary>
    public const int Limit = 64 * 1024;

    private byte[]? _buffer;
    private int _buffered;
    private int _replayPosition = -1;
    private bool _broken;

    /// <summary>True while everything read so far is kept, so that a new attempt can start from the beginning.</summary>
    public bool CanReplay => !_broken;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Starts the body over for the next attempt: the kept bytes first, then the rest from the caller.</summary>
    public void Rewind()
    {
        if (_broken)
        {
            throw new InvalidOperationException("The request body cannot be replayed.");
        }

        _replayPosition = 0;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (_replayPosition >= 0 && _replayPosition < _buffered)
        {
            var n = Math.Min(destination.Length, _buffered - _replayPosition);
            _buffer.AsMemory(_replayPosition, n).CopyTo(destination);
            _replayPosition += n;
            return n;
        }

        int read;
        try
        {
            read = await inner.ReadAsync(destination, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // An attempt given up on cancels its read; nothing was consumed, the next attempt continues.
            throw;
        }
        catch
        {
            _broken = true;
            throw;
        }

        Keep(destination.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && _buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
            _broken = true;
        }

        base.Dispose(disposing);
    }

    private void Keep(ReadOnlySpan<byte> data)
    {
        if (_broken || data.IsEmpty)
        {
            return;
        }

        if (_buffered + data.Length > Limit)
        {
            _broken = true;
            return;
        }

        if (_buffer is null || _buffer.Length < _buffered + data.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(Limit, Math.Max(4096, (_buffered + data.Length) * 2)));
            if (_buffer is not null)
            {
                _buffer.AsSpan(0, _buffered).CopyTo(bigger);
                ArrayPool<byte>.Shared.Return(_buffer);
            }

            _buffer = bigger;
        }

        data.CopyTo(_buffer.AsSpan(_buffered));
        _buffered += data.Length;
        if (_replayPosition >= 0)
        {
            _replayPosition = _buffered;
        }
    }
}
