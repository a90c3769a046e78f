using System.Collections.Concurrent;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The live state of one cluster: circuit-breaker counters, the retry budget, the statistics, and
/// each endpoint's health. A snapshot builds its clusters with fresh state; before the snapshot is
/// put in force, Runtime/RuntimeBuilder.cs hands each cluster the state of the cluster with the same
/// name in the snapshot it replaces, and each endpoint the health of the endpoint with the same
/// address, so a config change does not forget ejections, latencies or the budget.
/// </summary>
internal sealed class ClusterState : IClusterState, IClusterStats
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

    /// <inheritdoc/>
    public EndpointHealth HealthOf(string key) => _endpoints.GetOrAdd(key, static _ => new EndpointHealth());

    /// <inheritdoc/>
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

/// <summary>The attempt loop's view of a routing <see cref="Cluster"/>: its live state by its own type.</summary>
internal static class ClusterStateOfCluster
{
    extension(Cluster cluster)
    {
        /// <summary>The cluster's <see cref="ClusterState"/> (routing holds it as <see cref="IClusterState"/>).</summary>
        public ClusterState State => (ClusterState)cluster.LiveState;
    }
}
