using MeshProxy.Config.Resources;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>The retry-on conditions, Envoy's names (x-envoy-retry-on / x-envoy-retry-grpc-on).</summary>
[Flags]
internal enum RetryOn
{
    None = 0,

    /// <summary>"5xx": any 5xx, and no response at all (connect failure, reset, per-try timeout).</summary>
    ServerError = 1 << 0,

    /// <summary>"gateway-error": 502, 503, 504, and no response at all.</summary>
    GatewayError = 1 << 1,

    /// <summary>"reset": the upstream did not answer (disconnect, reset, per-try timeout).</summary>
    Reset = 1 << 2,

    /// <summary>"connect-failure": the connection could not be made (the request never left).</summary>
    ConnectFailure = 1 << 3,

    /// <summary>"refused-stream": HTTP/2 REFUSED_STREAM (the request was never processed).</summary>
    RefusedStream = 1 << 4,

    /// <summary>"retriable-status-codes", or a bare status code in retryOn: the listed statuses.</summary>
    RetriableStatusCodes = 1 << 5,

    /// <summary>"retriable-4xx": 409.</summary>
    Retriable4xx = 1 << 6,

    GrpcCancelled = 1 << 7,
    GrpcDeadlineExceeded = 1 << 8,
    GrpcInternal = 1 << 9,
    GrpcResourceExhausted = 1 << 10,
    GrpcUnavailable = 1 << 11,
}

/// <summary>
/// A route's retries, compiled. <see cref="MaxRetries"/> counts retries, not tries (Istio's
/// <c>attempts</c>): 3 means up to 4 tries in all.
/// </summary>
internal sealed class RetryPolicy
{
    /// <summary>Envoy's default backoff base interval; the maximum is ten times it.</summary>
    public static readonly TimeSpan BaseInterval = TimeSpan.FromMilliseconds(25);

    public static readonly TimeSpan MaxInterval = TimeSpan.FromMilliseconds(250);

    public RetryPolicy(int maxRetries, TimeSpan? perTryTimeout, RetryOn on, IReadOnlyList<int> statusCodes)
    {
        MaxRetries = maxRetries;
        PerTryTimeout = perTryTimeout;
        On = on;
        StatusCodes = [.. statusCodes];
    }

    /// <summary>Istio's default for a route that says nothing: 2 retries on connect-failure, refused-stream, unavailable, cancelled and 503.</summary>
    public static RetryPolicy Default { get; } = new(
        2, null, RetryOn.ConnectFailure | RetryOn.RefusedStream | RetryOn.GrpcUnavailable | RetryOn.GrpcCancelled | RetryOn.RetriableStatusCodes, [503]);

    public static RetryPolicy None { get; } = new(0, null, RetryOn.None, []);

    public int MaxRetries { get; }

    public TimeSpan? PerTryTimeout { get; }

    public RetryOn On { get; }

    public int[] StatusCodes { get; }

    public static RetryPolicy From(RetryPolicySpec? spec)
    {
        if (spec is null)
        {
            return Default;
        }

        if (spec.Attempts == 0)
        {
            return spec.PerTryTimeout is null ? None : new RetryPolicy(0, spec.PerTryTimeout, RetryOn.None, []);
        }

        var on = RetryOn.None;
        var codes = new List<int>();
        foreach (var condition in spec.RetryOn)
        {
            if (int.TryParse(condition, out var code))
            {
                codes.Add(code);
                on |= RetryOn.RetriableStatusCodes;
                continue;
            }

            on |= condition switch
            {
                "5xx" => RetryOn.ServerError,
                "gateway-error" => RetryOn.GatewayError,
                "reset" => RetryOn.Reset,
                "connect-failure" => RetryOn.ConnectFailure,
                "refused-stream" => RetryOn.RefusedStream,
                "retriable-4xx" => RetryOn.Retriable4xx,
                "retriable-status-codes" => RetryOn.RetriableStatusCodes,
                "cancelled" => RetryOn.GrpcCancelled,
                "deadline-exceeded" => RetryOn.GrpcDeadlineExceeded,
                "internal" => RetryOn.GrpcInternal,
                "resource-exhausted" => RetryOn.GrpcResourceExhausted,
                "unavailable" => RetryOn.GrpcUnavailable,
                _ => RetryOn.None, // the parser refuses anything else
            };
        }

        return new RetryPolicy(spec.Attempts, spec.PerTryTimeout, on, codes);
    }

    /// <summary>Does a response with this status (and gRPC status, or -1) call for a retry?</summary>
    public bool MatchesResponse(int status, int grpcStatus)
    {
        var on = On;
        if ((on & RetryOn.ServerError) != 0 && status >= 500 ||
            (on & RetryOn.GatewayError) != 0 && status is 502 or 503 or 504 ||
            (on & RetryOn.Retriable4xx) != 0 && status == 409 ||
            (on & RetryOn.RetriableStatusCodes) != 0 && Array.IndexOf(StatusCodes, status) >= 0)
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
    public bool MatchesFailure(FailureKind kind)
    {
        var on = On;
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
