using System.Runtime.CompilerServices;
using Google.Protobuf;
using MeshProxy.Grpc.Internal;

namespace MeshProxy.Grpc.Server.Internal;

internal abstract class MethodHandler
{
    public abstract Task InvokeAsync(ServerCall call, GrpcCallContext context, int maxMessageSize);

    protected static FramedMessageReader<T> Reader<T>(ServerCall call, MessageParser<T> parser, int maxMessageSize)
        where T : class, IMessage<T> =>
        new(call.HttpContext.Request.BodyReader, parser, maxMessageSize);

    /// <summary>Unary and server-streaming calls carry exactly one request message.</summary>
    protected static async Task<T> ReadSingleAsync<T>(FramedMessageReader<T> reader, CancellationToken cancellationToken)
        where T : class, IMessage<T>
    {
        var message = await reader.ReadAsync(cancellationToken)
            ?? throw new GrpcStatusException(StatusCode.Internal, "Request stream ended without a request message.");
        if (await reader.ReadAsync(cancellationToken) is not null)
        {
            throw new GrpcStatusException(StatusCode.Internal, "More than one request message for a method that takes one.");
        }

        return message;
    }

    protected static async IAsyncEnumerable<T> ReadAllAsync<T>(
        FramedMessageReader<T> reader,
        CancellationToken callToken,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
        where T : class, IMessage<T>
    {
        using var linked = cancellationToken.CanBeCanceled
            ? CancellationTokenSource.CreateLinkedTokenSource(callToken, cancellationToken)
            : null;
        var token = linked?.Token ?? callToken;
        while (await reader.ReadAsync(token) is { } message)
        {
            yield return message;
        }
    }
}

internal sealed class StreamWriter<T>(ServerCall call, CancellationToken callToken) : IGrpcStreamWriter<T>
    where T : class, IMessage<T>
{
    public async Task WriteAsync(T message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        using var linked = cancellationToken.CanBeCanceled
            ? CancellationTokenSource.CreateLinkedTokenSource(callToken, cancellationToken)
            : null;
        await call.WriteAsync(message, linked?.Token ?? callToken);
    }
}

internal sealed class UnaryMethodHandler<TRequest, TResponse>(
    MessageParser<TRequest> parser,
    Func<TRequest, GrpcCallContext, Task<TResponse>> handler) : MethodHandler
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public override async Task InvokeAsync(ServerCall call, GrpcCallContext context, int maxMessageSize)
    {
        var request = await ReadSingleAsync(Reader(call, parser, maxMessageSize), context.CancellationToken);
        var response = await handler(request, context)
            ?? throw new InvalidOperationException($"Handler for {call.Method} returned no response message.");
        await call.WriteAsync(response, context.CancellationToken);
    }
}

internal sealed class ServerStreamingMethodHandler<TRequest, TResponse>(
    MessageParser<TRequest> parser,
    Func<TRequest, IGrpcStreamWriter<TResponse>, GrpcCallContext, Task> handler) : MethodHandler
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public override async Task InvokeAsync(ServerCall call, GrpcCallContext context, int maxMessageSize)
    {
        var request = await ReadSingleAsync(Reader(call, parser, maxMessageSize), context.CancellationToken);
        await handler(request, new StreamWriter<TResponse>(call, context.CancellationToken), context);
    }
}

internal sealed class ClientStreamingMethodHandler<TRequest, TResponse>(
    MessageParser<TRequest> parser,
    Func<IAsyncEnumerable<TRequest>, GrpcCallContext, Task<TResponse>> handler) : MethodHandler
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public override async Task InvokeAsync(ServerCall call, GrpcCallContext context, int maxMessageSize)
    {
        var requests = ReadAllAsync(Reader(call, parser, maxMessageSize), context.CancellationToken);
        var response = await handler(requests, context)
            ?? throw new InvalidOperationException($"Handler for {call.Method} returned no response message.");
        await call.WriteAsync(response, context.CancellationToken);
    }
}

internal sealed class DuplexStreamingMethodHandler<TRequest, TResponse>(
    MessageParser<TRequest> parser,
    Func<IAsyncEnumerable<TRequest>, IGrpcStreamWriter<TResponse>, GrpcCallContext, Task> handler) : MethodHandler
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public override Task InvokeAsync(ServerCall call, GrpcCallContext context, int maxMessageSize)
    {
        var requests = ReadAllAsync(Reader(call, parser, maxMessageSize), context.CancellationToken);
        return handler(requests, new StreamWriter<TResponse>(call, context.CancellationToken), context);
    }
}
