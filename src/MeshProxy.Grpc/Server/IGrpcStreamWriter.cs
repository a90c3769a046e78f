namespace MeshProxy.Grpc.Server;

/// <summary>Sends response messages of a streaming call. One write at a time.</summary>
public interface IGrpcStreamWriter<in T>
{
    Task WriteAsync(T message, CancellationToken cancellationToken = default);
}
