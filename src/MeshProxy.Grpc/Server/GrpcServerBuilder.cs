using Google.Protobuf;
using MeshProxy.Grpc.Server.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Grpc.Server;

/// <summary>
/// Collects the method table; <see cref="Build"/> freezes it into a <see cref="GrpcServer"/>.
/// Paths are "/package.Service/Method", exactly as on the wire (case-sensitive).
/// </summary>
public sealed class GrpcServerBuilder
{
    private readonly Dictionary<string, MethodHandler> methods = new(StringComparer.Ordinal);

    public GrpcServerBuilder AddUnary<TRequest, TResponse>(
        string path,
        MessageParser<TRequest> requestParser,
        Func<TRequest, GrpcCallContext, Task<TResponse>> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Add(path, new UnaryMethodHandler<TRequest, TResponse>(requestParser, handler));
    }

    public GrpcServerBuilder AddServerStreaming<TRequest, TResponse>(
        string path,
        MessageParser<TRequest> requestParser,
        Func<TRequest, IGrpcStreamWriter<TResponse>, GrpcCallContext, Task> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Add(path, new ServerStreamingMethodHandler<TRequest, TResponse>(requestParser, handler));
    }

    public GrpcServerBuilder AddClientStreaming<TRequest, TResponse>(
        string path,
        MessageParser<TRequest> requestParser,
        Func<IAsyncEnumerable<TRequest>, GrpcCallContext, Task<TResponse>> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Add(path, new ClientStreamingMethodHandler<TRequest, TResponse>(requestParser, handler));
    }

    public GrpcServerBuilder AddDuplexStreaming<TRequest, TResponse>(
        string path,
        MessageParser<TRequest> requestParser,
        Func<IAsyncEnumerable<TRequest>, IGrpcStreamWriter<TResponse>, GrpcCallContext, Task> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Add(path, new DuplexStreamingMethodHandler<TRequest, TResponse>(requestParser, handler));
    }

    public GrpcServer Build(GrpcServerOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        var logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<GrpcServer>();
        return new GrpcServer(methods, options ?? new GrpcServerOptions(), logger);
    }

    private GrpcServerBuilder Add(string path, MethodHandler handler)
    {
        if (!IsMethodPath(path))
        {
            throw new ArgumentException($"'{path}' is not a gRPC method path of the form /package.Service/Method.", nameof(path));
        }

        if (!methods.TryAdd(path, handler))
        {
            throw new ArgumentException($"Method '{path}' is already registered.", nameof(path));
        }

        return this;
    }

    private static bool IsMethodPath(string path)
    {
        if (path.Length < 4 || path[0] != '/')
        {
            return false;
        }

        var slash = path.IndexOf('/', 1);
        return slash > 1 && slash < path.Length - 1 && path.IndexOf('/', slash + 1) < 0;
    }
}
