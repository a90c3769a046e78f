using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// What a route's <see cref="RetryPolicy"/> (routing's settings) decides for an attempt's outcome, and the wait
/// before the next try.
/// </summary>
internal static class RetryDecision
{
    /// <summary>Envoy's default backoff base interval; the maximum is ten times it.</summary>
    public static readonly TimeSpan BaseInterval = TimeSpan.FromMilliseconds(25);

    public static readonly TimeSpan MaxInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>Does a response with this status (and gRPC status, or -1) call for a retry?</summary>
    public static bool MatchesResponse(this RetryPolicy policy, int status, int grpcStatus)
    {
        var on = policy.On;
        if ((on & RetryOn.ServerError) != 0 && status >= 500 ||
            (on & RetryOn.GatewayError) != 0 && status is 502 or 503 or 504 ||
            (on & RetryOn.Retriable4xx) != 0 && status == 409 ||
            (on & RetryOn.RetriableStatusCodes) != 0 && Array.IndexOf(policy.StatusCodes, status) >= 0)
        {
            return true;
        }

        return grpcStatus switch
        {
            1 => (on & RetryOn.GrpcCancelled) != 0,
            4 => (on & RetryOn.GrpcDeadlineExceeded) != 0,
            8 => (on & RetryOn.GrpcResourceExhausted) != 0,
            13 => (on & RetryOn.GrpcInternal) != 0,
            14 => (on & RetryOn.GrpcUnavailable) != 0,
            _ => false,
        };
    }

    /// <summary>Does a failure without a response call for a retry?</summary>
    public static bool MatchesFailure(this RetryPolicy policy, FailureKind kind)
    {
        var on = policy.On;
        const RetryOn anyNoResponse = RetryOn.ServerError | RetryOn.GatewayError | RetryOn.Reset;
        return kind switch
        {
            FailureKind.ConnectFailure => (on & (anyNoResponse | RetryOn.ConnectFailure)) != 0,
            FailureKind.RefusedStream => (on & (anyNoResponse | RetryOn.RefusedStream)) != 0,
            FailureKind.Unsent => (on & (anyNoResponse | RetryOn.ConnectFailure | RetryOn.RefusedStream)) != 0,
            FailureKind.Reset or FailureKind.PerTryTimeout => (on & anyNoResponse) != 0,
            _ => false,
        };
    }

    /// <summary>Exponential backoff with full jitter: a random wait in [0, min(base x 2^n, max)).</summary>
    public static TimeSpan Backoff(int retry)
    {
        var ceiling = Math.Min(BaseInterval.TotalMilliseconds * (1 << Math.Min(retry, 10)), MaxInterval.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * ceiling);
    }
}

/// <summary>How an attempt failed when no response came back.</summary>
internal enum FailureKind
{
    /// <summary>Not a retriable failure: the caller went away, the request was malformed, a response body broke.</summary>
    Other,

    /// <summary>The connection could not be made: the request provably never left.</summary>
    ConnectFailure,

    /// <summary>HTTP/2 REFUSED_STREAM: the request provably was not processed.</summary>
    RefusedStream,

    /// <summary>
    /// The upstream had closed the (pooled) HTTP/1.1 connection before any byte of the request was written on
    /// it (<see cref="UnsentRequestException"/>): the request provably never left. Resent for free a few times
    /// (RequestAttempts.TryResendUnsent); after that a retry like a connect failure.
    /// </summary>
    Unsent,

    /// <summary>The connection broke before a response: the request may have arrived.</summary>
    Reset,

    /// <summary>The per-try timeout fired before response headers: the request may have arrived.</summary>
    PerTryTimeout,

    /// <summary>A circuit breaker refused the connection.</summary>
    Overflow,

    /// <summary>This sidecar's own failure before sending (no certificate, no socket): not retried, never the endpoint's fault.</summary>
    Own,

    /// <summary>
    /// The caller's own request cannot be sent as it is (a header value the upstream client refuses to encode,
    /// Telemetry/UnsendableRequest.cs): 400 DPE, not retried (no endpoint could take it), never the endpoint's fault.
    /// </summary>
    Downstream,
}
