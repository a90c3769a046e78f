using MeshProxy.Config.Resources;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// How one cluster is treated, compiled once per snapshot from its DestinationPolicy (or the defaults
/// when it has none). Immutable: the counters these limits are checked against live in
/// <see cref="ClusterState"/>, which survives snapshot swaps.
/// </summary>
internal sealed class ClusterPolicy
{
    /// <summary>Istio's connectTimeout default.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(10);

    public ClusterPolicy(
        LoadBalancerKind loadBalancer,
        CircuitLimits limits,
        OutlierPolicy? outlier,
        RetryBudgetPolicy budget,
        TimeSpan connectTimeout)
    {
        LoadBalancer = loadBalancer;
        Limits = limits;
        Outlier = outlier;
        Budget = budget;
        ConnectTimeout = connectTimeout;
    }

    /// <summary>No DestinationPolicy: least-request, no limits, no outlier detection, the default budget.</summary>
    public static ClusterPolicy Default { get; } = new(
        LoadBalancerKind.LeastRequest, CircuitLimits.Unlimited, null, RetryBudgetPolicy.Default, DefaultConnectTimeout);

    public LoadBalancerKind LoadBalancer { get; }

    public CircuitLimits Limits { get; }

    public OutlierPolicy? Outlier { get; }

    public RetryBudgetPolicy Budget { get; }

    public TimeSpan ConnectTimeout { get; }

    public static ClusterPolicy From(DestinationPolicySpec? spec)
    {
        if (spec is null)
        {
            return Default;
        }

        var pool = spec.ConnectionPool;
        return new ClusterPolicy(
            spec.LoadBalancer,
            new CircuitLimits(
                pool.MaxConnections ?? int.MaxValue,
                pool.Http1MaxPendingRequests ?? int.MaxValue,
                pool.Http2MaxRequests ?? int.MaxValue,
                pool.MaxRetries ?? int.MaxValue),
            spec.OutlierDetection is { } od ? OutlierPolicy.From(od) : null,
            RetryBudgetPolicy.From(spec.RetryBudget),
            pool.ConnectTimeout);
    }
}

/// <summary>
/// Circuit breaking, per cluster (Istio's connectionPool). int.MaxValue means unlimited.
/// </summary>
/// <param name="MaxConnections">Open upstream connections across the cluster's endpoints.</param>
/// <param name="MaxPendingRequests">HTTP/1.1: requests allowed to wait for a connection beyond <paramref name="MaxConnections"/>.</param>
/// <param name="MaxRequests">Requests in flight at once.</param>
/// <param name="MaxRetries">Retries in flight at once.</param>
internal sealed record CircuitLimits(int MaxConnections, int MaxPendingRequests, int MaxRequests, int MaxRetries)
{
    public static CircuitLimits Unlimited { get; } = new(int.MaxValue, int.MaxValue, int.MaxValue, int.MaxValue);

    /// <summary>
    /// The most requests admitted at once. On HTTP/1.1 each connection carries one request, so the
    /// requests beyond the open connections are exactly the pending ones (Envoy's pending queue).
    /// </summary>
    public long MaxAdmitted(bool http2) => http2 || MaxConnections == int.MaxValue || MaxPendingRequests == int.MaxValue
        ? MaxRequests
        : Math.Min(MaxRequests, (long)MaxConnections + MaxPendingRequests);
}

/// <summary>Outlier detection thresholds. A null threshold is off.</summary>
internal sealed record OutlierPolicy(
    int? Consecutive5xx,
    int? ConsecutiveGatewayErrors,
    int? ConsecutiveLocalOriginFailures,
    TimeSpan Interval,
    TimeSpan BaseEjectionTime,
    TimeSpan MaxEjectionTime,
    int MaxEjectionPercent)
{
    /// <summary>Envoy's max_ejection_time default: however often an endpoint was ejected, it is tried again within 5 minutes.</summary>
    public static readonly TimeSpan DefaultMaxEjectionTime = TimeSpan.FromMinutes(5);

    public static OutlierPolicy From(OutlierDetectionSpec spec) => new(
        spec.Consecutive5xxErrors,
        spec.ConsecutiveGatewayErrors,
        spec.ConsecutiveLocalOriginFailures,
        spec.Interval,
        spec.BaseEjectionTime,
        spec.BaseEjectionTime > DefaultMaxEjectionTime ? spec.BaseEjectionTime : DefaultMaxEjectionTime,
        spec.MaxEjectionPercent);

    /// <summary>At most this many of <paramref name="endpoints"/> may be ejected at once; at least one unless the percentage is 0 (as Envoy).</summary>
    public int MaxEjected(int endpoints) =>
        MaxEjectionPercent == 0 ? 0 : Math.Max(1, endpoints * MaxEjectionPercent / 100);
}

/// <summary>
/// The retry budget: retries may add <see cref="Ratio"/> of the requests, plus a floor of
/// <see cref="MinPerSecond"/> retries per second so that a quiet service can still retry, or (Istio's
/// form) any retry is allowed while fewer than <see cref="MinConcurrency"/> retries are in flight.
/// </summary>
internal sealed record RetryBudgetPolicy(double Ratio, int MinPerSecond, int MinConcurrency)
{
    public static RetryBudgetPolicy Default { get; } = new(0.2, 10, 0);

    public static RetryBudgetPolicy From(RetryBudgetSpec spec) =>
        new(spec.Percent / 100.0, spec.MinRetriesPerSecond ?? 0, spec.MinRetryConcurrency ?? 0);
}
