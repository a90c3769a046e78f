using System.Buffers.Binary;
using System.Text;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Tcp;

/// <summary>
/// The peer metadata of a TCP stream between sidecars, which has no headers to carry it: right after the mTLS
/// handshake each side writes its <see cref="PeerMetadata"/> text once (a 2-byte big-endian length, then the UTF-8
/// text, at most <see cref="MaxLength"/> bytes) before any of its app's bytes, and reads the other's. Both write
/// first and neither waits for its app, so a server that speaks first is not held up. Only ever sent inside mTLS.
/// </summary>
internal static class PeerPreamble
{
    public const int MaxLength = 1024;

    public static async Task WriteAsync(Stream stream, string metadata, CancellationToken cancellationToken)
    {
        var length = Encoding.UTF8.GetByteCount(metadata);
        if (length > MaxLength)
        {
            // Our own labels too long to send: the peer then reports this side as unknown, the stream still works.
            metadata = string.Empty;
            length = 0;
        }

        var frame = new byte[2 + length];
        BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)length);
        Encoding.UTF8.GetBytes(metadata, frame.AsSpan(2));
        await stream.WriteAsync(frame, cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    /// <summary>The peer's metadata; null when it sent none or malformed text. Throws <see cref="InvalidDataException"/> on a frame over the limit.</summary>
    public static async Task<PeerMetadata?> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        var header = new byte[2];
        await stream.ReadExactlyAsync(header, cancellationToken);
        var length = BinaryPrimitives.ReadUInt16BigEndian(header);
        if (length > MaxLength)
        {
            throw new InvalidDataException($"peer metadata of {length} bytes (at most {MaxLength})");
        }

        if (length == 0)
        {
            return null;
        }

        var text = new byte[length];
        await stream.ReadExactlyAsync(text, cancellationToken);
        return PeerMetadata.Parse(Encoding.UTF8.GetString(text));
    }
}
