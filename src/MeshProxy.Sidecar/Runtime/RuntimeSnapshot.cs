using System.Collections.Frozen;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Runtime;

/// <summary>
/// A snapshot in force with its runtime state: what requests on it use besides the configuration, built once by
/// <see cref="RuntimeBuilder"/> before any request can see it. The pipelines read it once per request
/// (<see cref="RuntimeStore.Current"/>), so the configuration, the labels and the transformer always match. Each
/// cluster's live state and pool are on the cluster itself (<see cref="Routing.Cluster.LiveState"/>,
/// <see cref="Routing.Cluster.Pool"/>), where the attempt loop and the sender find them without a lookup.
/// </summary>
internal sealed class RuntimeSnapshot
{
    public required SidecarSnapshot Snapshot { get; init; }

    /// <summary>The metric label values of every series a request on this snapshot records.</summary>
    public required SnapshotLabels Labels { get; init; }

    /// <summary>The inbound forwarder's header rules, answering mTLS callers with this workload's peer metadata.</summary>
    public required MeshRequestTransformer InboundTransformer { get; init; }

    /// <summary>The outbound clusters' connection pools by cluster name, each given to its clusters; retired when a later snapshot drops it.</summary>
    public required FrozenDictionary<string, ClusterPool> Pools { get; init; }
}
