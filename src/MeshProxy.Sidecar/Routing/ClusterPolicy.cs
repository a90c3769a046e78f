using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;

namespace MeshProxy.Sidecar.Routing;

/// <summary>
/// How one cluster is treated, compiled once per snapshot from its DestinationPolicy (or the defaults
/// when it has none). Settings only, part of the cluster's definition: the layers after routing act on
/// them (the attempt loop, connection limits, the pool); the counters these limits are checked against
/// live in the cluster's state (Resilience/ClusterState.cs), which survives snapshot swaps.
/// </summary>
internal sealed class ClusterPolicy
{
    /// <summary>Istio's connectTimeout default.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The config's idleTimeout default (see MeshProxy.Config's ConnectionPoolSpec).</summary>
    public static readonly TimeSpan DefaultIdleTimeout = ConnectionPoolSpec.Default.IdleTimeout;

    public ClusterPolicy(
        LoadBalancerKind loadBalancer,
        CircuitLimits limits,
        OutlierPolicy? outlier,
        RetryBudgetPolicy budget,
        TimeSpan connectTimeout,
        TimeSpan idleTimeout,
        int maxRequestsPerConnection = int.MaxValue,
        TimeSpan? tcpIdleTimeout = null)
    {
        LoadBalancer = loadBalancer;
        Limits = limits;
        OutlierDetection = outlier;
        Budget = budget;
        ConnectTimeout = connectTimeout;
        IdleTimeout = idleTimeout;
        MaxRequestsPerConnection = maxRequestsPerConnection;
        TcpIdleTimeout = tcpIdleTimeout ?? ConnectionPoolSpec.DefaultTcpIdleTimeout;
    }

    /// <summary>No DestinationPolicy: least-request, no limits, the default passive health check (<see cref="OutlierPolicy.Default"/>), the default budget.</summary>
    public static ClusterPolicy Default { get; } = new(
        LoadBalancerKind.LeastRequest, CircuitLimits.Unlimited, OutlierPolicy.Default, RetryBudgetPolicy.Default, DefaultConnectTimeout, DefaultIdleTimeout);

    public LoadBalancerKind LoadBalancer { get; }

    public CircuitLimits Limits { get; }

    /// <summary>Outlier detection (Istio's outlierDetection); null when it is turned off.</summary>
    public OutlierPolicy? OutlierDetection { get; }

    public RetryBudgetPolicy Budget { get; }

    public TimeSpan ConnectTimeout { get; }

    /// <summary>How long an upstream connection of this cluster may sit unused in the pool before it is closed.</summary>
    public TimeSpan IdleTimeout { get; }

    /// <summary>
    /// How long a TCP stream to this cluster (Tcp/README.md) may move no byte either way before it is closed (Istio's
    /// connectionPool.tcp.idleTimeout); <see cref="Timeout.InfiniteTimeSpan"/>: never.
    /// </summary>
    public TimeSpan TcpIdleTimeout { get; }

    /// <summary>Requests (HTTP/1.1) or streams (HTTP/2) an upstream connection carries before it is closed (Istio's maxRequestsPerConnection); int.MaxValue: no limit.</summary>
    public int MaxRequestsPerConnection { get; }

    /// <summary>Whether attempts must be marked for the per-connection limit (Resilience/RequestsPerConnection.cs): the limit is set and the cluster speaks HTTP/1.1 upstream.</summary>
    public bool LimitsRequestsPerConnection(bool http2) => !http2 && MaxRequestsPerConnection != int.MaxValue;

    /// <summary>Whether attempts go through the pool's rotating handler generations (Forwarding/HandlerGenerations.cs): the limit is set and the cluster speaks HTTP/2 upstream.</summary>
    public bool RotatesHandlers(bool http2) => http2 && MaxRequestsPerConnection != int.MaxValue;

    /// <summary>What the cluster's connection pool is built from: a new snapshot with the same settings keeps the pool and its warm connections.</summary>
    public PoolSettings Pool => new(IdleTimeout, Limits.MaxConnections, MaxRequestsPerConnection);

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
            spec.OutlierDetection switch
            {
                null => OutlierPolicy.Default,
                { Enabled: false } => null,
                var od => OutlierPolicy.From(od),
            },
            RetryBudgetPolicy.From(spec.RetryBudget),
            pool.ConnectTimeout,
            pool.IdleTimeout,
            pool.MaxRequestsPerConnection ?? int.MaxValue,
            pool.TcpIdleTimeout);
    }
}

/// <summary>
/// Circuit breaking, per cluster (Istio's connectionPool). int.MaxValue means unlimited.
/// </summary>
/// <param name="MaxConnections">Open upstream connections across the cluster's endpoints.</param>
/// <param name="MaxPendingRequests">Requests allowed to wait for a connection (HTTP/1.1) or a stream (HTTP/2) beyond those being served.</param>
/// <param name="MaxRequests">Requests in flight at once; on HTTP/2 the cluster's stream capacity, beyond which requests are pending.</param>
/// <param name="MaxRetries">Retries in flight at once.</param>
internal sealed record CircuitLimits(int MaxConnections, int MaxPendingRequests, int MaxRequests, int MaxRetries)
{
    public static CircuitLimits Unlimited { get; } = new(int.MaxValue, int.MaxValue, int.MaxValue, int.MaxValue);

    /// <summary>
    /// How many requests may be served at once before more are queued as pending: on HTTP/1.1 a
    /// connection carries one request, so it is <see cref="MaxConnections"/>; on HTTP/2 a connection
    /// carries many streams, and the cluster's stream capacity is <see cref="MaxRequests"/>
    /// (http2MaxRequests), and with <see cref="MaxConnections"/> at most that many connections times the
    /// server's advertised stream limit (<paramref name="serverStreams"/>, int.MaxValue while unknown).
    /// int.MaxValue: no limit.
    /// </summary>
    public int Serving(bool http2, int serverStreams)
    {
        if (!http2)
        {
            return MaxConnections;
        }

        return MaxConnections == int.MaxValue || serverStreams == int.MaxValue
            ? MaxRequests
            : (int)Math.Min(MaxRequests, (long)MaxConnections * serverStreams);
    }

    /// <summary>
    /// Whether requests go through the serving gate: whenever a limit can make them pending. On HTTP/2
    /// with maxConnections that is so even before the server's stream limit is known, so that the
    /// requests already in flight are counted once it is.
    /// </summary>
    public bool Gated(bool http2) =>
        MaxConnections != int.MaxValue || (http2 && MaxRequests != int.MaxValue);
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

/// <summary>The settings a cluster's upstream connection pool (its own SocketsHttpHandler) is built with.</summary>
internal readonly record struct PoolSettings(TimeSpan IdleTimeout, int MaxConnections, int MaxRequestsPerConnection);
