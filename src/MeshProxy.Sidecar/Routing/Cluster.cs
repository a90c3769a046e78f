using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;

namespace MeshProxy.Sidecar.Routing;

/// <summary>
/// A concrete upstream: one port of one service (outbound), or the local app (inbound). Named like
/// Envoy's clusters so that operators can read logs and /config_dump with what they already know.
/// </summary>
internal sealed class Cluster
{
    public Cluster(string name, string serviceName, string serviceNamespace, AppProtocol protocol, IReadOnlyList<UpstreamEndpoint> endpoints, IClusterState state, ClusterPolicy? policy = null)
    {
        Name = name;
        ServiceName = serviceName;
        ServiceNamespace = serviceNamespace;
        Protocol = protocol;
        Endpoints = endpoints;
        Policy = policy ?? ClusterPolicy.Default;
        Picker = EndpointPickers.Create(Policy.LoadBalancer, endpoints);
        AdoptState(state);
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

    /// <summary>
    /// Counters that outlive the snapshot (Resilience/ClusterState.cs, which the attempt loop reads back by its own
    /// type): fresh when the snapshot is built, carried over by Runtime/RuntimeBuilder.cs from the cluster of the
    /// same name.
    /// </summary>
    public IClusterState LiveState { get; private set; } = null!;

    /// <summary>
    /// Its upstream connections (Forwarding/ClusterPool.cs), given by Runtime/RuntimeBuilder.cs before the snapshot is
    /// put in force; null on a cluster outside a snapshot in force (tests, benchmarks) and on the inbound one.
    /// </summary>
    public IClusterConnections? Pool { get; private set; }

    /// <summary>Takes over live state and a pool; only while the runtime of a snapshot is built, before any request sees it.</summary>
    internal void Adopt(IClusterState state, IClusterConnections? pool)
    {
        AdoptState(state);
        Pool = pool;
    }

    private void AdoptState(IClusterState state)
    {
        LiveState = state;
        foreach (var endpoint in Endpoints)
        {
            endpoint.Health = state.HealthOf(endpoint.Key);
        }

        state.Forget(Endpoints);
    }
}

/// <summary>
/// A cluster's upstream connections as routing holds them: opaque here, so that a snapshot's clusters can carry
/// their pool without routing depending on the upstream-send layer that owns it (Forwarding/ClusterPool.cs, the
/// one implementation, which the sender reads back by its own type).
/// </summary>
internal interface IClusterConnections
{
    /// <summary>False once the connections are retired and drained.</summary>
    bool TryAcquire();

    void Release();
}

/// <summary>
/// A cluster's live state as routing holds it: only what routing does with it (hand each endpoint its health
/// record, forget the records of endpoints gone), so that a snapshot's clusters carry their state without routing
/// depending on the attempt loop that owns it (Resilience/ClusterState.cs, the one implementation).
/// </summary>
internal interface IClusterState
{
    /// <summary>The health record of the endpoint at <paramref name="key"/> (address:port), made on first sight.</summary>
    EndpointHealth HealthOf(string key);

    /// <summary>Drops the records of endpoints no longer in the cluster.</summary>
    void Forget(IReadOnlyList<UpstreamEndpoint> current);
}
