using System.IO.Pipelines;
using Google.Protobuf;

namespace MeshProxy.Grpc.Internal;

/// <summary>
/// Reads framed messages from a <see cref="PipeReader"/>: Kestrel's request body directly on the
/// server, <see cref="PipeReader.Create(Stream, StreamPipeReaderOptions?)"/> over the response
/// stream on the client. Frames may arrive split over any number of reads or many to a read.
/// Not thread-safe: one reader at a time, as gRPC streams are.
/// </summary>
internal sealed class FramedMessageReader<T>(PipeReader reader, MessageParser<T> parser, int maxMessageSize)
    where T : class, IMessage<T>
{
    /// <summary>The next message, or null at a clean end of stream.</summary>
    public async ValueTask<T?> ReadAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken);
            if (result.IsCanceled)
            {
                throw new OperationCanceledException("Reading messages was cancelled.");
            }

            var buffer = result.Buffer;
            T? message;
            try
            {
                message = TryParse(ref buffer);
            }
            catch
            {
                reader.AdvanceTo(result.Buffer.Start);
                throw;
            }

            if (message is not null)
            {
                reader.AdvanceTo(buffer.Start);
                return message;
            }

            if (result.IsCompleted)
            {
                reader.AdvanceTo(buffer.End);
                if (buffer.IsEmpty)
                {
                    return null;
                }

                throw new GrpcStatusException(
                    StatusCode.Internal,
                    $"Stream ended in the middle of a message ({buffer.Length} bytes of an incomplete frame).");
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private T? TryParse(ref System.Buffers.ReadOnlySequence<byte> buffer)
    {
        if (!MessageFraming.TryReadFrame(ref buffer, maxMessageSize, out var payload))
        {
            return null;
        }

        try
        {
            return parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new GrpcStatusException(StatusCode.Internal, $"Failed to parse a {typeof(T).Name} message: {ex.Message}", ex);
        }
    }
}
