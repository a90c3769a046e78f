using Microsoft.Extensions.Logging;

namespace MeshProxy.Grpc.Server.Internal;

internal static partial class ServerLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "gRPC handler for {Method} threw; answered UNKNOWN")]
    public static partial void HandlerFailed(ILogger logger, string method, Exception exception);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "gRPC call {Method} exceeded its deadline of {Timeout}")]
    public static partial void DeadlineExceeded(ILogger logger, string method, TimeSpan timeout);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "gRPC call {Method} aborted by the client")]
    public static partial void CallAborted(ILogger logger, string method);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "gRPC request for {Path} refused: {Reason} {Value}")]
    public static partial void Rejected(ILogger logger, string path, string reason, string? value);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "Could not send the status of gRPC call {Method}")]
    public static partial void CompletionFailed(ILogger logger, string method, Exception exception);

    [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "gRPC handler for {Method} ended after its call was completed")]
    public static partial void HandlerEndedAfterCompletion(ILogger logger, string method, Exception exception);
}
