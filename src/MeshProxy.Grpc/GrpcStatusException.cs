namespace MeshProxy.Grpc;

/// <summary>
/// A call ended with a non-OK gRPC status. Handlers throw it to answer with that status; the client
/// throws it when the server (or the transport) ended the call with one. <see cref="Exception.Message"/>
/// is the status message exactly as it travels in <c>grpc-message</c> (before percent-encoding).
/// </summary>
public sealed class GrpcStatusException : Exception
{
    public GrpcStatusException(StatusCode statusCode, string message)
        : base(message)
    {
        StatusCode = statusCode;
    }

    public GrpcStatusException(StatusCode statusCode, string message, Exception innerException)
        : base(message, innerException)
    {
        StatusCode = statusCode;
    }

    public StatusCode StatusCode { get; }

    public override string ToString() => $"gRPC status {StatusCode} ({(int)StatusCode}): {Message}";
}
