using System.Collections.Concurrent;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The live state of one cluster: circuit-breaker counters, the retry budget, the statistics, and
/// each endpoint's health. A snapshot builds its clusters with fresh state; before the snapshot is
/// published, <see cref="CarryOver"/> hands each cluster the state of the cluster with the same name
/// in the snapshot it replaces, and each endpoint the health of the endpoint with the same address,
/// so a config change does not forget ejections, latencies or the budget.
/// </summary>
internal sealed class ClusterState
{
    private readonly ConcurrentDictionary<string, EndpointHealth> _endpoints = new(StringComparer.Ordinal);
    private int _activeRequests;
    private int _activeRetries;
    private int _serverStreams = int.MaxValue;

    public ResilienceStats Stats { get; } = new();

    public RetryBudget Budget { get; } = new();

    public int ActiveRequests => Volatile.Read(ref _activeRequests);

    public int ActiveRetries => Volatile.Read(ref _activeRetries);

    /// <summary>Requests being served (on HTTP/1.1 one per connection, on HTTP/2 one per stream) and those pending for a slot.</summary>
    public SlotGate Serving { get; } = new();

    /// <summary>Open upstream connections across the cluster's endpoints, and connects waiting for the limit.</summary>
    public SlotGate Connections { get; } = new();

    public int OpenConnections => Connections.Count;

    /// <summary>
    /// The SETTINGS_MAX_CONCURRENT_STREAMS the cluster's HTTP/2 servers last advertised (watched only on
    /// clusters with maxConnections, see <see cref="ServerStreamLimit"/>); int.MaxValue until one is seen.
    /// The last value from any connection wins: a cluster's servers normally share their settings.
    /// </summary>
    public int ServerStreams => Volatile.Read(ref _serverStreams);

    /// <summary>A server advertised its stream limit; when the figure changes, the serving gate's capacity follows.</summary>
    public void ObserveServerStreams(uint advertised, CircuitLimits limits)
    {
        var streams = (int)Math.Min(advertised, int.MaxValue);
        if (Interlocked.Exchange(ref _serverStreams, streams) != streams)
        {
            // A larger capacity lets queued requests in now rather than when a served one ends.
            Serving.Resize(limits.Serving(http2: true, streams));
        }
    }

    /// <summary>Every cluster a snapshot can send to: each service port's, each route destination's, and the inbound one.</summary>
    public static IEnumerable<Cluster> ClustersOf(SidecarSnapshot snapshot) =>
        snapshot.Services.VirtualHosts
            .SelectMany(v => v.Rules.SelectMany(r => r.Destinations.Select(d => d.Cluster)).Prepend(v.DefaultCluster))
            .Prepend(snapshot.InboundCluster)
            .Distinct();

    /// <summary>Gives every cluster of <paramref name="next"/> the state of its namesake in <paramref name="previous"/>.</summary>
    public static void CarryOver(SidecarSnapshot previous, SidecarSnapshot next)
    {
        var old = new Dictionary<string, ClusterState>(StringComparer.Ordinal);
        foreach (var c in ClustersOf(previous))
        {
            old.TryAdd(c.Name, c.State);
        }

        foreach (var c in ClustersOf(next))
        {
            if (old.TryGetValue(c.Name, out var state))
            {
                c.AdoptState(state);
            }
        }
    }

    /// <summary>The health record of the endpoint at <paramref name="key"/> (address:port), made on first sight.</summary>
    public EndpointHealth HealthOf(string key) => _endpoints.GetOrAdd(key, static _ => new EndpointHealth());

    /// <summary>Drops the records of endpoints no longer in the cluster.</summary>
    public void Forget(IReadOnlyList<UpstreamEndpoint> current)
    {
        if (_endpoints.Count <= current.Count)
        {
            return;
        }

        var keep = current.Select(e => e.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var key in _endpoints.Keys)
        {
            if (!keep.Contains(key))
            {
                _endpoints.TryRemove(key, out _);
            }
        }
    }

    public bool TryAdmit(long maxAdmitted)
    {
        if (Interlocked.Increment(ref _activeRequests) > maxAdmitted)
        {
            Interlocked.Decrement(ref _activeRequests);
            return false;
        }

        return true;
    }

    public void Release() => Interlocked.Decrement(ref _activeRequests);

    public bool TryBeginRetry(int maxRetries)
    {
        if (Interlocked.Increment(ref _activeRetries) > maxRetries)
        {
            Interlocked.Decrement(ref _activeRetries);
            return false;
        }

        return true;
    }

    public void EndRetry() => Interlocked.Decrement(ref _activeRetries);
}

/// <summary>
/// Counters of one cluster, for telemetry to export (monotonic unless named as a gauge). Public
/// properties so that the exporter needs nothing else.
/// </summary>
internal sealed class ResilienceStats
{
    private long _retries;
    private long _retriesExhausted;
    private long _retryOverflow;
    private long _overflow;
    private long _ejections;
    private long _timeouts;
    private long _resentUnsent;

    /// <summary>Attempts after the first (Envoy's upstream_rq_retry).</summary>
    public long Retries => Volatile.Read(ref _retries);

    /// <summary>Failures returned because the retry budget was spent (upstream_rq_retry_limit_exceeded, URX).</summary>
    public long RetriesExhausted => Volatile.Read(ref _retriesExhausted);

    /// <summary>Retries refused by the concurrent-retries limit (upstream_rq_retry_overflow, UO).</summary>
    public long RetryOverflow => Volatile.Read(ref _retryOverflow);

    /// <summary>Requests refused by a circuit breaker (upstream_rq_pending_overflow, UO).</summary>
    public long Overflow => Volatile.Read(ref _overflow);

    /// <summary>Outlier ejections (outlier_detection.ejections_enforced_total).</summary>
    public long Ejections => Volatile.Read(ref _ejections);

    /// <summary>Requests answered 504 UT (upstream_rq_timeout), per-try or route timeout.</summary>
    public long Timeouts => Volatile.Read(ref _timeouts);

    /// <summary>Requests sent again because the upstream had closed their connection before a byte of them was written (not retries).</summary>
    public long ResentUnsent => Volatile.Read(ref _resentUnsent);

    internal void Retry() => Interlocked.Increment(ref _retries);

    internal void RetryExhausted() => Interlocked.Increment(ref _retriesExhausted);

    internal void RetryOverflowed() => Interlocked.Increment(ref _retryOverflow);

    internal void Overflowed() => Interlocked.Increment(ref _overflow);

    internal void Ejected() => Interlocked.Increment(ref _ejections);

    internal void TimedOut() => Interlocked.Increment(ref _timeouts);

    internal void Resent() => Interlocked.Increment(ref _resentUnsent);
}
