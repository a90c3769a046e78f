using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// Passes the upstream's response headers on as soon as they are in when its body is not, as Envoy does.
/// Kestrel sends headers with the first body write, and the forwarder writes only once body bytes arrive,
/// so without this a long-poll or server-sent-events response shows its caller nothing until the first
/// event. YARP deliberately does not start the response early (a gRPC trailers-only response must stay one
/// HEADERS frame that ends the stream); here it is started only when the body is really late.
/// Called by the last transformer, once the response is committed to the caller (after the retry decision),
/// with the headers already copied. The common case — the body's first bytes (or its end) arrived with the
/// headers — costs one zero-byte read that completes synchronously: no allocation, no syscall, no flush.
/// </summary>
internal static class EarlyResponseHeaders
{
    private const string GrpcStatus = "grpc-status";

    /// <summary>Always true (the response is to be copied); awaits the first body bytes only when they were not there yet, after sending the headers.</summary>
    public static ValueTask<bool> SendIfBodyLateAsync(HttpContext context, HttpResponseMessage upstream, CancellationToken cancellationToken)
    {
        // 1xx and 101 (the forwarder switches protocols itself) are not responses with a body to wait for.
        if ((int)upstream.StatusCode < 200 || context.Response.HasStarted)
        {
            return new ValueTask<bool>(true);
        }

        // HttpContent caches this task: the forwarder's own ReadAsStreamAsync gets the same stream, and
        // for a response from HttpClient it is already complete.
        var streamTask = upstream.Content.ReadAsStreamAsync(cancellationToken);
        if (!streamTask.IsCompletedSuccessfully)
        {
            return new ValueTask<bool>(true);
        }

        // A zero-byte read completes at once when body bytes or the end of the body are buffered, and
        // otherwise waits for them without taking a buffer (the forwarder's copy starts the same way).
        var first = streamTask.Result.ReadAsync(Memory<byte>.Empty, cancellationToken);
        if (first.IsCompleted)
        {
            Consume(first);
            return new ValueTask<bool>(true);
        }

        return SendThenWaitAsync(context, upstream, first, cancellationToken);
    }

    private static async ValueTask<bool> SendThenWaitAsync(HttpContext context, HttpResponseMessage upstream, ValueTask<int> first, CancellationToken cancellationToken)
    {
        // A trailers-only gRPC response (grpc-status among the headers) stays one frame that ends the stream:
        // never started here, whatever the timing.
        if (!upstream.Headers.NonValidated.Contains(GrpcStatus))
        {
            try
            {
                await context.Response.StartAsync(cancellationToken);
                await context.Response.Body.FlushAsync(cancellationToken);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
                // The caller is gone: the forwarder's first write meets the same and reports it (DC).
            }
        }

        // The read must end before the forwarder reads the stream: one read at a time.
        try
        {
            await first;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or HttpRequestException or ObjectDisposedException)
        {
            // The upstream failed or the request was cancelled while waiting: the forwarder's own read of the
            // body meets the same failure and classifies it as for any response body.
        }

        return true;
    }

    private static void Consume(ValueTask<int> completed)
    {
        try
        {
            // Releases a pooled IValueTaskSource behind the ValueTask; a failure resurfaces on the forwarder's read.
            _ = completed.GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or HttpRequestException or ObjectDisposedException)
        {
        }
    }
}
