using Google.Protobuf;
using MeshProxy.Grpc.Internal;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Grpc.Server.Internal;

/// <summary>
/// The response side of one call. Writes and completion share a gate, so that once the status is
/// sent (for instance by the deadline while the handler is still running) nothing else reaches the wire.
/// </summary>
internal sealed class ServerCall(HttpContext httpContext, string method, ILogger logger) : IDisposable
{
    private readonly SemaphoreSlim gate = new(1, 1);
    private bool completed;

    public HttpContext HttpContext { get; } = httpContext;

    public string Method { get; } = method;

    public async Task WriteAsync(IMessage message, CancellationToken cancellationToken)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            if (completed)
            {
                throw new InvalidOperationException($"gRPC call {Method} is already complete; no more messages can be sent.");
            }

            var writer = HttpContext.Response.BodyWriter;
            MessageFraming.WriteMessage(writer, message);
            await writer.FlushAsync(cancellationToken);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Sends the status: in the headers (Trailers-Only) when nothing has been sent yet, in the
    /// trailers otherwise. Only the first completion counts.
    /// </summary>
    public async Task CompleteAsync(StatusCode code, string? message)
    {
        await gate.WaitAsync();
        try
        {
            if (completed)
            {
                return;
            }

            completed = true;
            var response = HttpContext.Response;
            IHeaderDictionary target;
            if (!response.HasStarted)
            {
                target = response.Headers;
            }
            else
            {
                var trailers = HttpContext.Features.Get<IHttpResponseTrailersFeature>();
                if (trailers is null)
                {
                    // Only HTTP/2 requests get here, and Kestrel's HTTP/2 always offers trailers.
                    throw new InvalidOperationException("The server does not support response trailers.");
                }

                target = trailers.Trailers;
            }

            target[GrpcProtocol.StatusHeader] = ((int)code).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (!string.IsNullOrEmpty(message))
            {
                target[GrpcProtocol.MessageHeader] = StatusMessageEncoding.Encode(message);
            }

            await response.CompleteAsync();
        }
        catch (Exception ex) when (ex is not InvalidOperationException || HttpContext.RequestAborted.IsCancellationRequested)
        {
            ServerLog.CompletionFailed(logger, Method, ex);
        }
        finally
        {
            gate.Release();
        }
    }

    public void Dispose() => gate.Dispose();
}
