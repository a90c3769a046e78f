namespace MeshProxy.Grpc.Server;

public sealed record GrpcServerOptions
{
    /// <summary>Largest request message accepted; larger ones end the call with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; init; } = MeshProxy.Grpc.Internal.GrpcProtocol.DefaultMaxReceiveMessageSize;
}
