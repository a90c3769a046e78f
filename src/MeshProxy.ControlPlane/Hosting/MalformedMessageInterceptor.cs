using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace MeshProxy.ControlPlane.Hosting;

/// <summary>
/// Gives a streaming caller whose frames cannot be read (a compressed flag other than 0 or 1, a frame cut short,
/// bytes that are not the request message) INTERNAL with the reason, as the gRPC spec asks for a malformed
/// request. grpc-dotnet reports these as exceptions from the request reader, which would otherwise leave the
/// handler as UNKNOWN "Exception was thrown by handler." and tell the caller nothing.
/// </summary>
internal sealed class MalformedMessageInterceptor : Interceptor
{
    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        continuation(new CheckedReader<TRequest>(requestStream), responseStream, context);

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation) =>
        continuation(new CheckedReader<TRequest>(requestStream), context);

    private sealed class CheckedReader<T>(IAsyncStreamReader<T> inner) : IAsyncStreamReader<T>
    {
        public T Current => inner.Current;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            try
            {
                return await inner.MoveNext(cancellationToken);
            }
            catch (Exception ex) when (ex is InvalidDataException or InvalidProtocolBufferException)
            {
                throw new RpcException(new Status(StatusCode.Internal, $"malformed request message: {ex.Message}"));
            }
        }
    }
}
