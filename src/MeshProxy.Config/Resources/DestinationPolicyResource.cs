namespace MeshProxy.Config.Resources;

/// <summary>
/// How callers treat one destination service (Istio's DestinationRule trafficPolicy): load balancing,
/// connection limits (circuit breaking), outlier detection, and the retry budget. Applies to every
/// caller of <see cref="DestinationPolicySpec.Host"/>.
/// </summary>
public sealed record DestinationPolicyResource(ObjectMeta Metadata, SourceLocation Source, DestinationPolicySpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "DestinationPolicy";

    public override string Kind => KindName;
}

public sealed record DestinationPolicySpec(
    string Host,
    LoadBalancerKind LoadBalancer,
    ConnectionPoolSpec ConnectionPool,
    OutlierDetectionSpec? OutlierDetection,
    RetryBudgetSpec RetryBudget);

/// <summary>Istio's loadBalancer.simple, plus PEAK_EWMA (latency-aware, as linkerd2-proxy balances).</summary>
public enum LoadBalancerKind
{
    LeastRequest,
    RoundRobin,
    PeakEwma,
    Random,
}

/// <summary>
/// Circuit breaking. Unset limits are unlimited, as in Istio (2^32-1 there); the TCP connect timeout
/// defaults to Istio's 10 s. The HTTP idle timeout defaults to 90 s rather than Istio's 1 h: the proxy
/// should close an idle connection before the server does (many servers give up after 60-120 s), so
/// that a request is rarely sent on a connection the server is closing. The TCP idle timeout (a byte stream that
/// moves no byte either way for this long is closed) is Istio's <c>connectionPool.tcp.idleTimeout</c>, 1 h by default,
/// <see cref="Timeout.InfiniteTimeSpan"/> for Istio's <c>0s</c> (never).
/// </summary>
public sealed record ConnectionPoolSpec(
    int? MaxConnections,
    TimeSpan ConnectTimeout,
    int? Http1MaxPendingRequests,
    int? Http2MaxRequests,
    int? MaxRequestsPerConnection,
    int? MaxRetries,
    TimeSpan IdleTimeout,
    TimeSpan TcpIdleTimeout)
{
    /// <summary>Istio's (and Envoy's TCP proxy's) default idle timeout of a byte stream.</summary>
    public static readonly TimeSpan DefaultTcpIdleTimeout = TimeSpan.FromHours(1);

    /// <summary>The longest TCP idle timeout: what a timer can wait (about 49 days), rounded down.</summary>
    public static readonly TimeSpan MaxTcpIdleTimeout = TimeSpan.FromDays(30);

    public static ConnectionPoolSpec Default { get; } = new(null, TimeSpan.FromSeconds(10), null, null, null, null, TimeSpan.FromSeconds(90), DefaultTcpIdleTimeout);
}

/// <summary>
/// Passive health checking: an endpoint that fails this many times in a row is ejected for
/// baseEjectionTime x (times ejected), never more than maxEjectionPercent of the endpoints at once.
/// <see cref="ConsecutiveLocalOriginFailures"/> is as written; it takes effect only with
/// <see cref="SplitExternalLocalOriginErrors"/> (Envoy's split_external_local_origin_errors), without
/// which local-origin failures count as 503/504 responses. No outlierDetection at all leaves the sidecar's
/// default passive health check on (consecutive connect failures, see the sidecar's Resilience/README.md);
/// <see cref="Enabled"/> false (<c>enabled: false</c>) turns every ejection off.
/// </summary>
public sealed record OutlierDetectionSpec(
    int? Consecutive5xxErrors,
    int? ConsecutiveGatewayErrors,
    int? ConsecutiveLocalOriginFailures,
    TimeSpan Interval,
    TimeSpan BaseEjectionTime,
    int MaxEjectionPercent,
    bool SplitExternalLocalOriginErrors = false,
    bool Enabled = true)
{
    /// <summary><c>outlierDetection: { enabled: false }</c>: no passive health checking, not even the default.</summary>
    public static OutlierDetectionSpec Disabled { get; } = new(null, null, null, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), 0, Enabled: false);
}

/// <summary>
/// Retries may add at most <see cref="Percent"/> % to the requests in flight, but a floor is always
/// allowed so that a quiet service can still retry: either Istio's <see cref="MinRetryConcurrency"/>
/// (retries in flight at once) or linkerd's <see cref="MinRetriesPerSecond"/>. Exactly one is set.
/// The default is linkerd's (20 %, 10 per second): a rate floor bounds the retries of a total outage,
/// where a concurrency floor would let every sequential caller retry fully.
/// </summary>
public sealed record RetryBudgetSpec(double Percent, int? MinRetryConcurrency, int? MinRetriesPerSecond)
{
    public static RetryBudgetSpec Default { get; } = new(20, null, 10);
}
