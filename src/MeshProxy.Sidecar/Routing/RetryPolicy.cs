using MeshProxy.Config.Resources;

namespace MeshProxy.Sidecar.Routing;

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
/// A route's retries, compiled: settings only, part of the route rule. <see cref="MaxRetries"/> counts
/// retries, not tries (Istio's <c>attempts</c>): 3 means up to 4 tries in all. What they decide for an
/// attempt's outcome is the attempt loop's (Resilience/RetryDecision.cs).
/// </summary>
internal sealed class RetryPolicy
{
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
}
