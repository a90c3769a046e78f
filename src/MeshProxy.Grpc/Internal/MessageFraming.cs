using System.Buffers;
using System.Buffers.Binary;
using Google.Protobuf;

namespace MeshProxy.Grpc.Internal;

/// <summary>
/// Length-Prefixed-Message: 1 byte compressed flag, 4 bytes big-endian length, then the message.
/// This layer negotiates no compression (it answers grpc-accept-encoding: identity), so a set
/// compressed flag is always a protocol error.
/// </summary>
internal static class MessageFraming
{
    public const int HeaderSize = 5;

    /// <summary>
    /// Takes one complete frame off the front of <paramref name="buffer"/>. Returns false, leaving the
    /// buffer untouched, when more bytes are needed. The size limit is checked on the header alone,
    /// so an oversize message is refused before any of it is buffered.
    /// </summary>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxMessageSize, out ReadOnlySequence<byte> message)
    {
        message = default;
        if (buffer.Length < HeaderSize)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[HeaderSize];
        buffer.Slice(0, HeaderSize).CopyTo(header);
        switch (header[0])
        {
            case 0:
                break;
            case 1:
                throw new GrpcStatusException(
                    StatusCode.Internal,
                    "Received a compressed message, but no grpc-encoding was negotiated (only identity is supported).");
            default:
                throw new GrpcStatusException(StatusCode.Internal, $"Invalid compressed flag {header[0]} in a message header (must be 0 or 1).");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > (uint)maxMessageSize)
        {
            throw new GrpcStatusException(
                StatusCode.ResourceExhausted,
                $"Received message larger than max ({length} vs. {maxMessageSize} bytes).");
        }

        if (buffer.Length - HeaderSize < length)
        {
            return false;
        }

        message = buffer.Slice(HeaderSize, length);
        buffer = buffer.Slice(message.End);
        return true;
    }

    /// <summary>Writes header and message straight into the writer's memory: no intermediate buffer.</summary>
    public static void WriteMessage(IBufferWriter<byte> writer, IMessage message)
    {
        var size = message.CalculateSize();
        var header = writer.GetSpan(HeaderSize);
        header[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(header[1..], (uint)size);
        writer.Advance(HeaderSize);
        if (size > 0)
        {
            message.WriteTo(writer);
        }
    }
}
