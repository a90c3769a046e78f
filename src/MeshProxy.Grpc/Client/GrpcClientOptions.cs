namespace MeshProxy.Grpc.Client;

public sealed record GrpcClientOptions
{
    /// <summary>Largest response message accepted; larger ones fail the call with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; init; } = MeshProxy.Grpc.Internal.GrpcProtocol.DefaultMaxReceiveMessageSize;

    /// <summary>PING after this long without frames from the server, even with no call open.</summary>
    public TimeSpan KeepAlivePingDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A PING unanswered for this long closes the connection: its calls fail with UNAVAILABLE.</summary>
    public TimeSpan KeepAlivePingTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
