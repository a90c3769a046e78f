using System.Buffers.Binary;
using System.Text;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Tcp;

/// <summary>
/// The peer metadata of a TCP stream between sidecars, which has no headers to carry it: right after the mTLS
/// handshake each side writes its <see cref="PeerMetadata"/> text once (a 2-byte big-endian length, then the UTF-8
/// text, at most <see cref="MaxLength"/> bytes) before any of its app's bytes, and reads the other's. Both write
/// first and neither waits for its app, so a server that speaks first is not held up. Only ever sent inside mTLS.
/// The inbound side answers a stream its policy denies with the length <see cref="DeniedLength"/> and no text instead
/// of its metadata, then closes: the caller can then tell a denial from a failure (Tcp/README.md).
/// </summary>
internal static class PeerPreamble
{
    public const int MaxLength = 1024;

    /// <summary>
    /// A length no metadata can have (over <see cref="MaxLength"/>): the destination denied the stream. A caller that
    /// predates it reads an oversized frame and records a connect failure, as it did before.
    /// </summary>
    public const ushort DeniedLength = 0xFFFF;

    private static readonly byte[] DeniedFrame = [0xFF, 0xFF];

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

    /// <summary>The inbound side's answer to a stream its policy denied, in place of its metadata.</summary>
    public static async Task WriteDeniedAsync(Stream stream, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(DeniedFrame, cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    /// <summary>
    /// The peer's frame: its metadata (null when it sent none or malformed text), or its denial. Throws
    /// <see cref="InvalidDataException"/> on a frame over the limit and <see cref="EndOfStreamException"/> on a stream
    /// that ends inside the frame; nothing else from the bytes themselves.
    /// </summary>
    public static async Task<PeerFrame> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        var header = new byte[2];
        await stream.ReadExactlyAsync(header, cancellationToken);
        var length = BinaryPrimitives.ReadUInt16BigEndian(header);
        if (length == DeniedLength)
        {
            return PeerFrame.Denied;
        }

        if (length > MaxLength)
        {
            throw new InvalidDataException($"peer metadata of {length} bytes (at most {MaxLength})");
        }

        if (length == 0)
        {
            return PeerFrame.Unknown;
        }

        var text = new byte[length];
        await stream.ReadExactlyAsync(text, cancellationToken);
        return new PeerFrame(PeerMetadata.Parse(Encoding.UTF8.GetString(text)), IsDenied: false);
    }
}

/// <summary>What the other sidecar sent first on a TCP stream: its metadata (null: none or malformed), or its denial.</summary>
internal readonly record struct PeerFrame(PeerMetadata? Metadata, bool IsDenied)
{
    public static PeerFrame Unknown => default;

    public static PeerFrame Denied => new(null, IsDenied: true);
}
