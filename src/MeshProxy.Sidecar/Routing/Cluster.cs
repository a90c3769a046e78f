using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;

namespace MeshProxy.Sidecar.Routing;

/// <summary>One upstream instance, with its forwarding address prepared once per snapshot.</summary>
internal sealed class UpstreamEndpoint(string address, int port, int weight, string? identity)
{
    public string Address { get; } = address;

    public int Port { get; } = port;

    public int Weight { get; } = weight;

    /// <summary>The SPIFFE ID or service account this endpoint must present (checked once mTLS is on).</summary>
    public string? Identity { get; } = identity;

    /// <summary>"http://address:port", built once so forwarding does not format a string per request.</summary>
    public string DestinationPrefix { get; } = $"http://{FormatHost(address)}:{port}";

    /// <summary>"address:port": the endpoint's identity within its cluster, across snapshots.</summary>
    public string Key { get; } = $"{FormatHost(address)}:{port}";

    /// <summary>
    /// Live load and outlier state. Set when the cluster is built and, before the snapshot is
    /// published, replaced by the record of the same endpoint in the previous snapshot; never changed
    /// once requests can see it.
    /// </summary>
    public EndpointHealth Health { get; internal set; } = new();

    public override string ToString() => Key;

    private static string FormatHost(string address) => address.Contains(':') ? $"[{address}]" : address;
}

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
