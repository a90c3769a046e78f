using System.Collections.Frozen;
using MeshProxy.Grpc.Internal;
using MeshProxy.Grpc.Server.Internal;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Grpc.Server;

/// <summary>
/// Serves a frozen method table. <see cref="HandleAsync"/> is a plain <see cref="RequestDelegate"/>:
/// use it as <c>app.Run(server.HandleAsync)</c> in a WebApplication, or from any IHttpApplication
/// under a raw KestrelServer. Needs HTTP/2 (trailers); the endpoint should listen with HttpProtocols.Http2.
/// </summary>
public sealed class GrpcServer
{
    // CancellationTokenSource timers cannot reach further; a longer grpc-timeout is as good as none.
    private static readonly TimeSpan MaxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly FrozenDictionary<string, MethodHandler> methods;
    private readonly GrpcServerOptions options;
    private readonly ILogger logger;

    internal GrpcServer(IReadOnlyDictionary<string, MethodHandler> methods, GrpcServerOptions options, ILogger logger)
    {
        this.methods = methods.ToFrozenDictionary(StringComparer.Ordinal);
        this.options = options;
        this.logger = logger;
    }

    /// <summary>The registered method paths.</summary>
    public IEnumerable<string> Methods => methods.Keys;

    public async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var response = context.Response;
        var path = (request.PathBase + request.Path).Value ?? string.Empty;

        // Plain HTTP answers first: these clients may not speak gRPC and would read a 200 as success.
        if (!HttpProtocol.IsHttp2(request.Protocol))
        {
            ServerLog.Rejected(logger, path, "protocol", request.Protocol);
            response.StatusCode = StatusCodes.Status426UpgradeRequired;
            response.Headers.Upgrade = "h2";
            await response.WriteAsync("gRPC requires HTTP/2.\n");
            return;
        }

        if (!HttpMethods.IsPost(request.Method))
        {
            ServerLog.Rejected(logger, path, "method", request.Method);
            response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            response.Headers.Allow = "POST";
            return;
        }

        if (!GrpcProtocol.IsProtobufGrpcContentType(request.ContentType))
        {
            ServerLog.Rejected(logger, path, "content-type", request.ContentType);
            response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            await response.WriteAsync("Content-Type must be application/grpc or application/grpc+proto.\n");
            return;
        }

        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = GrpcProtocol.ContentType;

        using var call = new ServerCall(context, path, logger);
        if (!methods.TryGetValue(path, out var handler))
        {
            ServerLog.Rejected(logger, path, "method", "unknown");
            await call.CompleteAsync(StatusCode.Unimplemented, $"Method {path} is not implemented.");
            return;
        }

        var encoding = request.Headers[GrpcProtocol.EncodingHeader].ToString();
        if (encoding.Length > 0 && !encoding.Equals(GrpcProtocol.IdentityEncoding, StringComparison.OrdinalIgnoreCase))
        {
            response.Headers[GrpcProtocol.AcceptEncodingHeader] = GrpcProtocol.IdentityEncoding;
            await call.CompleteAsync(StatusCode.Unimplemented, $"grpc-encoding '{encoding}' is not supported; only identity is.");
            return;
        }

        TimeSpan? timeout = null;
        var timeoutHeader = request.Headers[GrpcProtocol.TimeoutHeader];
        if (timeoutHeader.Count > 0)
        {
            if (!GrpcTimeout.TryParse(timeoutHeader.ToString(), out var parsed))
            {
                await call.CompleteAsync(StatusCode.Internal, $"Malformed grpc-timeout '{timeoutHeader}'.");
                return;
            }

            timeout = parsed;
        }

        await RunAsync(call, handler, timeout);
    }

    private async Task RunAsync(ServerCall call, MethodHandler handler, TimeSpan? timeout)
    {
        var context = call.HttpContext;
        using var deadlineSource = new CancellationTokenSource();
        using var callSource = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, deadlineSource.Token);
        DateTimeOffset? deadline = null;
        if (timeout is { } t)
        {
            deadline = DateTimeOffset.UtcNow + t;
            if (t <= TimeSpan.Zero)
            {
                await call.CompleteAsync(StatusCode.DeadlineExceeded, "Deadline exceeded.");
                return;
            }

            if (t < MaxTimer)
            {
                deadlineSource.CancelAfter(t);
            }
        }

        var deadlineReached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = deadlineSource.Token.Register(() => deadlineReached.TrySetResult());
        var callContext = new GrpcCallContext(context, call.Method, deadline, callSource.Token);
        var handlerTask = InvokeAsync(handler, call, callContext, options.MaxReceiveMessageSize);

        if (await Task.WhenAny(handlerTask, deadlineReached.Task) != handlerTask)
        {
            // The handler may ignore its token; the client gets its answer now regardless, and the
            // call's write gate stops the handler from writing after it.
            ServerLog.DeadlineExceeded(logger, call.Method, timeout!.Value);
            await call.CompleteAsync(StatusCode.DeadlineExceeded, "Deadline exceeded.");
            await ObserveAsync(handlerTask, call.Method);
            return;
        }

        try
        {
            await handlerTask;
            await call.CompleteAsync(StatusCode.OK, null);
        }
        catch (GrpcStatusException ex)
        {
            await call.CompleteAsync(ex.StatusCode, ex.Message);
        }
        catch (Exception) when (deadlineSource.IsCancellationRequested)
        {
            ServerLog.DeadlineExceeded(logger, call.Method, timeout!.Value);
            await call.CompleteAsync(StatusCode.DeadlineExceeded, "Deadline exceeded.");
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client reset the stream or left: there is nobody to send a status to.
            ServerLog.CallAborted(logger, call.Method);
        }
        catch (Exception ex)
        {
            // The exception text stays in the log: it may hold paths, keys or internals.
            ServerLog.HandlerFailed(logger, call.Method, ex);
            await call.CompleteAsync(StatusCode.Unknown, "Exception was thrown by handler.");
        }
    }

    private static async Task InvokeAsync(MethodHandler handler, ServerCall call, GrpcCallContext context, int maxMessageSize)
    {
        // Yield so that a handler which blocks synchronously cannot hold back the deadline race.
        await Task.Yield();
        await handler.InvokeAsync(call, context, maxMessageSize);
    }

    private async Task ObserveAsync(Task handlerTask, string method)
    {
        try
        {
            await handlerTask;
        }
        catch (Exception ex)
        {
            ServerLog.HandlerEndedAfterCompletion(logger, method, ex);
        }
    }
}
