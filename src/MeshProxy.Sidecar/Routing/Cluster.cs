using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;

namespace MeshProxy.Sidecar.Routing;

/// <summary>
/// A concrete upstream: one port of one service (outbound), or the local app (inbound). Named like
/// Envoy's clusters so that operators can read logs and /config_dump with what they already know.
/// </summary>
internal sealed class Cluster
{
    public Cluster(string name, string serviceName, string serviceNamespace, AppProtocol protocol, IReadOnlyList<UpstreamEndpoint> endpoints, ClusterPolicy? policy = null)
    {
        Name = name;
        ServiceName = serviceName;
        ServiceNamespace = serviceNamespace;
        Protocol = protocol;
        Endpoints = endpoints;
        Policy = policy ?? ClusterPolicy.Default;
        Picker = EndpointPickers.Create(Policy.LoadBalancer, endpoints);
        AdoptState(new ClusterState());
    }

    /// <summary>outbound|port||host, the Envoy/Istio convention; inbound|port|| for the local app.</summary>
    public string Name { get; }

    public string ServiceName { get; }

    public string ServiceNamespace { get; }

    public AppProtocol Protocol { get; }

    public IReadOnlyList<UpstreamEndpoint> Endpoints { get; }

    public IEndpointPicker Picker { get; }

    /// <summary>Load balancing, circuit breaking, outlier detection and retry budget settings (DestinationPolicy).</summary>
    public ClusterPolicy Policy { get; }

    /// <summary>Counters that outlive the snapshot: see <see cref="ClusterState.CarryOver"/>.</summary>
    public ClusterState State { get; private set; } = null!;

    /// <summary>Its upstream connections; set by <see cref="Forwarding.UpstreamTransport"/> before the snapshot is published.</summary>
    public Forwarding.ClusterPool? Pool { get; internal set; }

    /// <summary>Takes over live state; only while the snapshot is being built, before any request sees it.</summary>
    internal void AdoptState(ClusterState state)
    {
        State = state;
        foreach (var endpoint in Endpoints)
        {
            endpoint.Health = state.HealthOf(endpoint.Key);
        }

        state.Forget(Endpoints);
    }
}
