using System.Buffers.Binary;
using MeshProxy.Sidecar.Tcp;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Fuzz;

/// <summary>
/// The first bytes the other sidecar sends on a TCP stream between sidecars (Tcp/PeerPreamble.cs): its metadata frame,
/// then its app's bytes. The first input byte chooses how many bytes each read returns (a TLS stream hands over records
/// of any size); the rest is the stream. Beyond "no exception but the two documented ones": the outcome follows the
/// length field alone (denial marker, over the limit, too short), metadata that is returned is well-formed and
/// encodes back to the text sent, and the reader never takes a byte past the frame (those are the app's).
/// </summary>
internal static class PeerPreambleTarget
{
    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }

        var chunk = input[0] % 17; // 0: whatever is left, at once
        var bytes = input[1..].ToArray();
        var stream = new ChunkedStream(bytes, chunk == 0 ? int.MaxValue : chunk);
        int? length = bytes.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(bytes) : null;

        PeerFrame frame;
        try
        {
            frame = PeerPreamble.ReadAsync(stream, CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (EndOfStreamException)
        {
            FuzzTargets.Check(length is null || (length <= PeerPreamble.MaxLength && bytes.Length < 2 + length), $"end of stream with {bytes.Length} bytes for a frame of {length}");
            return;
        }
        catch (InvalidDataException)
        {
            FuzzTargets.Check(length is > PeerPreamble.MaxLength and not PeerPreamble.DeniedLength, $"refused a frame of {length} bytes");
            return;
        }

        FuzzTargets.Check(length is not null, "a frame from fewer than two bytes");
        FuzzTargets.Check(frame.IsDenied == (length == PeerPreamble.DeniedLength), $"denied is {frame.IsDenied} for a length of {length}");
        var consumed = frame.IsDenied ? 2 : 2 + length!.Value;
        FuzzTargets.Check(stream.Position == consumed, $"read {stream.Position} bytes of a {consumed}-byte frame: the app's bytes were taken");
        if (frame.Metadata is { } metadata)
        {
            FuzzTargets.Check(metadata.Workload.Length > 0 && metadata.Namespace.Length > 0, "metadata without a workload or namespace");
            var text = System.Text.Encoding.UTF8.GetString(bytes, 2, length!.Value);
            var encoded = PeerMetadata.Encode(metadata.Workload, metadata.Namespace, metadata.CanonicalService, metadata.CanonicalRevision, metadata.App, metadata.Version);
            FuzzTargets.Check(encoded == text, $"metadata '{text}' read back as '{encoded}'");
        }
    }

    /// <summary>A read-only stream over the input that returns at most a chunk per read, as TLS records arrive.</summary>
    private sealed class ChunkedStream(byte[] bytes, int chunk) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => bytes.Length;

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = Math.Min(Math.Min(buffer.Length, chunk), bytes.Length - _position);
            bytes.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
