using System.Net.Http;

namespace MeshProxy.Grpc.Client.Internal;

/// <summary>
/// The lifetime of one client call: its deadline timer and caller cancellation joined into one token,
/// and the translation of whatever ended the call into a gRPC status.
/// </summary>
internal sealed class CallScope : IDisposable
{
    private static readonly TimeSpan MaxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly CancellationTokenSource deadlineSource = new();
    private readonly CancellationTokenSource callSource;
    private readonly CancellationToken callerToken;

    public CallScope(GrpcCallOptions options)
    {
        callerToken = options.CancellationToken;
        callSource = CancellationTokenSource.CreateLinkedTokenSource(callerToken, deadlineSource.Token);
        if (options.Deadline is { } deadline)
        {
            Timeout = deadline - DateTimeOffset.UtcNow;
            if (Timeout <= TimeSpan.Zero)
            {
                deadlineSource.Cancel();
            }
            else if (Timeout < MaxTimer)
            {
                deadlineSource.CancelAfter(Timeout.Value);
            }
        }
    }

    /// <summary>Time left when the call started; null without a deadline.</summary>
    public TimeSpan? Timeout { get; }

    public CancellationToken Token => callSource.Token;

    public void Cancel() => callSource.Cancel();

    public void ThrowIfDeadlinePassed()
    {
        if (deadlineSource.IsCancellationRequested)
        {
            throw new GrpcStatusException(StatusCode.DeadlineExceeded, "Deadline exceeded.");
        }
    }

    /// <summary>
    /// Maps a failure to a <see cref="GrpcStatusException"/>. The deadline wins over whatever the
    /// transport reported, since aborting the stream on the deadline is what caused that report.
    /// Programming errors (anything not listed) pass through unchanged.
    /// </summary>
    public Exception Translate(Exception exception)
    {
        if (deadlineSource.IsCancellationRequested)
        {
            return new GrpcStatusException(StatusCode.DeadlineExceeded, "Deadline exceeded.", exception);
        }

        if (callerToken.IsCancellationRequested)
        {
            return new GrpcStatusException(StatusCode.Cancelled, "Call cancelled by the caller.", exception);
        }

        return exception switch
        {
            GrpcStatusException => exception,
            HttpProtocolException reset => new GrpcStatusException(
                ResetCode(reset.ErrorCode), $"HTTP/2 stream reset by the server (error code {reset.ErrorCode}).", exception),
            HttpRequestException http => new GrpcStatusException(
                StatusCode.Unavailable, $"Transport failure: {http.Message}", exception),
            IOException io => new GrpcStatusException(StatusCode.Unavailable, $"Transport failure: {io.Message}", exception),
            OperationCanceledException => new GrpcStatusException(StatusCode.Cancelled, "Call cancelled.", exception),
            _ => exception,
        };
    }

    // RST_STREAM error code -> gRPC status, from PROTOCOL-HTTP2.md ("Errors").
    private static StatusCode ResetCode(long errorCode) => errorCode switch
    {
        0x7 => StatusCode.Unavailable,
        0x8 => StatusCode.Cancelled,
        0xB => StatusCode.ResourceExhausted,
        0xC => StatusCode.PermissionDenied,
        _ => StatusCode.Internal,
    };

    public void Dispose()
    {
        callSource.Dispose();
        deadlineSource.Dispose();
    }
}
