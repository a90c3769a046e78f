using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using MeshProxy.Grpc.Internal;

namespace MeshProxy.Grpc.Client.Internal;

/// <summary>
/// Reads a gRPC response: validates the headers, yields the messages, and ends with the status from
/// the trailers, or from the headers for a Trailers-Only response.
/// </summary>
internal sealed class ResponseReader<T> : IAsyncDisposable
    where T : class, IMessage<T>
{
    private readonly HttpResponseMessage response;
    private readonly PipeReader? pipe;
    private readonly FramedMessageReader<T>? reader;

    private ResponseReader(HttpResponseMessage response, PipeReader? pipe, FramedMessageReader<T>? reader)
    {
        this.response = response;
        this.pipe = pipe;
        this.reader = reader;
    }

    /// <summary>Checks the response headers; throws the call's status if it already failed there.</summary>
    public static async Task<ResponseReader<T>> CreateAsync(
        HttpResponseMessage response, MessageParser<T> parser, int maxMessageSize, CancellationToken cancellationToken)
    {
        try
        {
            return await CreateCoreAsync(response, parser, maxMessageSize, cancellationToken);
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    private static async Task<ResponseReader<T>> CreateCoreAsync(
        HttpResponseMessage response, MessageParser<T> parser, int maxMessageSize, CancellationToken cancellationToken)
    {
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new GrpcStatusException(
                FromHttpStatus(response.StatusCode),
                $"Bad gRPC response: HTTP status {(int)response.StatusCode} {response.ReasonPhrase}.");
        }

        var contentType = response.Content.Headers.ContentType?.MediaType;
        if (!GrpcProtocol.IsGrpcContentType(contentType))
        {
            throw new GrpcStatusException(StatusCode.Internal, $"Bad gRPC response: content-type '{contentType}'.");
        }

        if (TryGetStatus(response.Headers, out var code, out var message))
        {
            // Trailers-Only: the headers carry the status and the body is empty.
            ThrowIfNotOk(code, message);
            return new ResponseReader<T>(response, null, null);
        }

        var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        var pipe = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: false));
        return new ResponseReader<T>(response, pipe, new FramedMessageReader<T>(pipe, parser, maxMessageSize));
    }

    /// <summary>The next message; null after an OK status. A non-OK status is thrown.</summary>
    public async Task<T?> ReadAsync(CancellationToken cancellationToken)
    {
        if (reader is null)
        {
            return null;
        }

        var message = await reader.ReadAsync(cancellationToken);
        if (message is not null)
        {
            return message;
        }

        // The body has ended, so SocketsHttpHandler has filled in TrailingHeaders.
        if (!TryGetStatus(response.TrailingHeaders, out var code, out var text))
        {
            throw new GrpcStatusException(StatusCode.Internal, "Bad gRPC response: the response ended without grpc-status.");
        }

        ThrowIfNotOk(code, text);
        return null;
    }

    public async ValueTask DisposeAsync()
    {
        if (pipe is not null)
        {
            await pipe.CompleteAsync();
        }

        response.Dispose();
    }

    private static bool TryGetStatus(HttpHeaders headers, out StatusCode code, out string? message)
    {
        code = StatusCode.Unknown;
        message = null;
        if (!headers.NonValidated.TryGetValues(GrpcProtocol.StatusHeader, out var statusValues))
        {
            return false;
        }

        var statusText = statusValues.ToString();
        if (!GrpcProtocol.TryParseStatus(statusText, out code))
        {
            message = $"Bad gRPC response: unparsable grpc-status '{statusText}'.";
            code = StatusCode.Unknown;
            return true;
        }

        if (headers.NonValidated.TryGetValues(GrpcProtocol.MessageHeader, out var messageValues))
        {
            message = StatusMessageEncoding.Decode(messageValues.ToString());
        }

        return true;
    }

    private static void ThrowIfNotOk(StatusCode code, string? message)
    {
        if (code != StatusCode.OK)
        {
            throw new GrpcStatusException(code, message ?? string.Empty);
        }
    }

    // https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md
    private static StatusCode FromHttpStatus(HttpStatusCode status) => (int)status switch
    {
        400 => StatusCode.Internal,
        401 => StatusCode.Unauthenticated,
        403 => StatusCode.PermissionDenied,
        404 => StatusCode.Unimplemented,
        429 or 502 or 503 or 504 => StatusCode.Unavailable,
        _ => StatusCode.Unknown,
    };
}
