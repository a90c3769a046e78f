using System.Collections.Frozen;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Runtime;

/// <summary>
/// The one place a snapshot's runtime state is built, with what it takes over from the snapshot it replaces
/// stated here rather than left to events: each cluster gets the live state of its namesake (outlier ejections,
/// latencies, budgets, breaker counters belong to clusters, not snapshots) and, outbound, its namesake's pool
/// while the pool settings are the same (warm connections survive a config change); pools no cluster keeps are
/// retired (closed once the requests still in them are done); the labels reuse equal values of the previous
/// ones; the inbound transformer is kept while the peer metadata it answers with is the same. Each layer's part
/// is its own: the state is Resilience's <see cref="ClusterState"/> (routing holds it as <see cref="IClusterState"/>), pools come from Forwarding's
/// <see cref="IClusterPools"/>, labels are Telemetry's <see cref="SnapshotLabels"/>.
/// </summary>
internal static class RuntimeBuilder
{
    /// <summary>
    /// Builds the runtime of <paramref name="next"/>, taking over from <paramref name="previous"/> (the one in force,
    /// null for the first); only before <paramref name="next"/> is in force, as it hands its clusters their state.
    /// </summary>
    public static RuntimeSnapshot Build(SidecarSnapshot next, RuntimeSnapshot? previous, IClusterPools pools)
    {
        var states = new Dictionary<string, IClusterState>(StringComparer.Ordinal);
        foreach (var cluster in previous?.Snapshot.Clusters() ?? [])
        {
            states.TryAdd(cluster.Name, cluster.LiveState);
        }

        var before = previous?.Pools ?? FrozenDictionary<string, ClusterPool>.Empty;
        var kept = new Dictionary<string, ClusterPool>(StringComparer.Ordinal);
        foreach (var cluster in next.Clusters())
        {
            ClusterPool? pool = null;
            if (!ReferenceEquals(cluster, next.InboundCluster) && !kept.TryGetValue(cluster.Name, out pool))
            {
                var settings = cluster.Policy.Pool;
                pool = before.TryGetValue(cluster.Name, out var earlier) && earlier.Settings == settings ? earlier : pools.Create(settings);
                kept[cluster.Name] = pool;
            }

            cluster.Adopt(states.GetValueOrDefault(cluster.Name) ?? cluster.LiveState, pool);
        }

        foreach (var (name, pool) in before)
        {
            if (!kept.TryGetValue(name, out var now) || !ReferenceEquals(now, pool))
            {
                pool.Retire();
            }
        }

        var labels = new SnapshotLabels(next, previous?.Labels);
        return new RuntimeSnapshot
        {
            Snapshot = next,
            Labels = labels,
            InboundTransformer = previous is { } p && p.Labels.PeerHeader == labels.PeerHeader
                ? p.InboundTransformer
                : MeshRequestTransformer.InboundWith(labels.PeerHeader),
            Pools = kept.ToFrozenDictionary(StringComparer.Ordinal),
        };
    }
}
