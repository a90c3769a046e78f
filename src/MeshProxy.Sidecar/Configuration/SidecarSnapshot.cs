using MeshProxy.Config.Resources;
using MeshProxy.Authorization;
using MeshProxy.Sidecar.Authentication;
using MeshProxy.Sidecar.Egress;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Configuration;

/// <summary>
/// Everything one request needs to be handled, built once from the resources and never changed. A
/// request reads <see cref="SnapshotStore.Current"/> once, at its start, and finishes on that snapshot
/// even if a newer one is swapped in while it is in flight.
/// </summary>
internal sealed class SidecarSnapshot
{
    private bool _stale;
    private bool _provisional;

    public required string Version { get; init; }

    /// <summary>Where the snapshot came from: the bootstrap file's path, or the control plane's address.</summary>
    public required string Source { get; init; }

    public required DateTimeOffset AppliedAt { get; init; }

    public required SidecarResource Sidecar { get; init; }

    public WorkloadSpec Workload => Sidecar.Spec.Workload;

    /// <summary>The local application, as the inbound pipeline's only upstream.</summary>
    public required Cluster InboundCluster { get; init; }

    public required ServiceTable Services { get; init; }

    /// <summary>Mesh-wide settings: the MeshConfig resource if there is one, else the defaults.</summary>
    public required MeshConfigSpec Mesh { get; init; }

    /// <summary>
    /// The inbound mTLS mode per port (PeerAuthentication over MeshConfig's mtls.mode), read by the inbound listener
    /// once per connection: a new snapshot changes the mode of the next connections, never of open ones.
    /// </summary>
    public InboundMtls InboundMtls { get; init; } = InboundMtls.Strict;

    /// <summary>The EgressPolicies that apply to this workload, compiled, with the mesh's outboundTrafficPolicy.</summary>
    public EgressRules Egress { get; init; } = EgressRules.Empty(OutboundTrafficMode.RegistryOnly);

    /// <summary>
    /// The AuthorizationPolicies that apply to this workload, compiled with the snapshot so that a new
    /// policy set takes effect in the same reference swap as the rest of the configuration.
    /// </summary>
    public required AuthorizationEngine Authorization { get; init; }

    /// <summary>
    /// The RequestAuthentications that apply to this workload, compiled (inline keys built); null when none
    /// does, so the inbound step costs a null check for workloads without JWT.
    /// </summary>
    public RequestAuthenticator? Authentication { get; init; }

    /// <summary>The extension providers this workload's CUSTOM policies name, resolved against MeshConfig (ExternalAuthorization/README.md).</summary>
    public ExternalAuthorization.ExternalAuthorizationProviders ExternalAuthorization { get; init; } = MeshProxy.Sidecar.ExternalAuthorization.ExternalAuthorizationProviders.None;

    /// <summary>
    /// Control-plane mode: restored from the saved copy because the control plane could not be reached;
    /// true until the control plane pushes a snapshot again.
    /// </summary>
    public bool Stale { get => _stale; init => _stale = value; }

    /// <summary>
    /// Control-plane mode before any snapshot arrived: just the bootstrap's Sidecar, so the listeners can
    /// open; the sidecar is not ready while this is in force.
    /// </summary>
    public bool Provisional { get => _provisional; init => _provisional = value; }

    /// <summary>Every cluster the snapshot can send to: each service port's, each route destination's, and the inbound one.</summary>
    public IEnumerable<Cluster> Clusters() =>
        Services.VirtualHosts
            .SelectMany(v => v.Rules.SelectMany(r => r.Destinations.Select(d => d.Cluster)).Prepend(v.DefaultCluster))
            .Prepend(InboundCluster)
            .Distinct();

    /// <summary>The resources this snapshot was built from, for /config_dump.</summary>
    public required IReadOnlyList<Resource> Resources { get; init; }

    /// <summary>
    /// This snapshot with other flags and everything else the same. A memberwise copy rather than a list of
    /// properties: a property added later is carried over without anyone having to remember this method
    /// (a hand-written copy once dropped <see cref="Egress"/>, and a restarted sidecar refused all egress).
    /// Only for a snapshot that is not yet in force: the copy shares its clusters and their state.
    /// </summary>
    public SidecarSnapshot Restamp(bool stale, bool provisional)
    {
        var copy = (SidecarSnapshot)MemberwiseClone();
        copy._stale = stale;
        copy._provisional = provisional;
        return copy;
    }
}
