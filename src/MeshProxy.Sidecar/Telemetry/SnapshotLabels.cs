using System.Collections.Frozen;
using MeshProxy.Config.Resources;
using MeshProxy.Metrics.Istio;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The metric label values of one snapshot, built with the snapshot's runtime state before it is put in force
/// (Runtime/RuntimeBuilder.cs): this workload's side of every series, and the destination side of every
/// outbound cluster. Requests copy these string instances into their labels, so the metrics registry finds a
/// series by reference and recording allocates nothing; a cluster whose labels did not change keeps the
/// previous snapshot's instances, so its series are found by reference across a configuration change too.
/// </summary>
internal sealed class SnapshotLabels
{
    public const string Source = "source";
    public const string Destination = "destination";

    /// <summary>Istio's name for the destination of traffic that matched no service (NR).</summary>
    public const string BlackHoleCluster = "BlackHoleCluster";

    private readonly FrozenDictionary<Cluster, IstioWorkloadLabels> _outbound;
    private readonly IstioWorkloadLabels _inbound;
    private readonly FrozenDictionary<VirtualHost, string> _inboundServices;
    private readonly WorkloadSpec _workload;
    private readonly IstioWorkloadLabels _egressPassthrough;

    // Keyed by the decision's "namespace/name"; bounded by the snapshot's policies. Split once, so every
    // tunnel through one policy carries the same label strings.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, IstioWorkloadLabels> _egressPolicies = new(StringComparer.Ordinal);

    /// <param name="previous">The labels of the snapshot this one replaces, whose equal values are reused.</param>
    public SnapshotLabels(SidecarSnapshot snapshot, SnapshotLabels? previous = null)
    {
        Snapshot = snapshot;
        _workload = snapshot.Workload;
        var labels = _workload.Labels;
        LocalPrincipal = SpiffeId(snapshot.Mesh.TrustDomain, _workload.Namespace, _workload.ServiceAccount);
        LocalApp = AppOf(_workload);
        LocalVersion = Label(labels, "version") ?? Label(labels, "app.kubernetes.io/version");
        LocalCanonicalService = CanonicalServiceOf(_workload);
        LocalCanonicalRevision = Label(labels, "service.istio.io/canonical-revision") ?? LocalVersion;
        LocalServiceFqdn = $"{LocalApp}.{_workload.Namespace}.svc.cluster.local";

        _inbound = Reuse(previous?._inbound, new IstioWorkloadLabels
        {
            Reporter = Destination,

            // The caller's workload needs Istio's peer metadata exchange, which MeshProxy does not do;
            // its principal (and so its namespace) comes from the mTLS connection, request by request.
            DestinationWorkload = _workload.Name,
            DestinationWorkloadNamespace = _workload.Namespace,
            DestinationPrincipal = LocalPrincipal,
            DestinationApp = LocalApp,
            DestinationVersion = LocalVersion,
            DestinationService = LocalServiceFqdn,
            DestinationCanonicalService = LocalCanonicalService,
            DestinationCanonicalRevision = LocalCanonicalRevision,
            DestinationServiceName = LocalApp,
            DestinationServiceNamespace = _workload.Namespace,
        });

        var virtualHosts = snapshot.Services.VirtualHosts.ToList();
        var clusters = virtualHosts
            .SelectMany(v => v.Rules.SelectMany(r => r.Destinations.Select(d => d.Cluster)).Append(v.DefaultCluster))
            .Distinct();
        var before = previous?._outbound.ToDictionary(p => p.Key.Name, p => p.Value, StringComparer.Ordinal);
        _outbound = clusters.ToFrozenDictionary(c => c, c => Reuse(before?.GetValueOrDefault(c.Name), OutboundFor(c)));
        _inboundServices = virtualHosts.ToFrozenDictionary(v => v, v => v.ServiceFqdn);
        OutboundBlackHole = Reuse(previous?.OutboundBlackHole, OutboundBase() with { DestinationServiceName = BlackHoleCluster });
        var peerHeader = PeerMetadata.Encode(_workload.Name, _workload.Namespace, LocalCanonicalService, LocalCanonicalRevision, LocalApp, LocalVersion);
        PeerHeader = peerHeader == previous?.PeerHeader ? previous.PeerHeader : peerHeader;
        _egressPassthrough = Reuse(previous?._egressPassthrough, OutboundBase() with { DestinationServiceName = PassthroughCluster });
    }

    /// <summary>Istio's name for the destination of egress allowed by ALLOW_ANY rather than by a policy.</summary>
    public const string PassthroughCluster = "PassthroughCluster";

    public SidecarSnapshot Snapshot { get; }

    /// <summary>This workload's peer metadata header value (Telemetry/PeerMetadata.cs).</summary>
    public string PeerHeader { get; }

    public string LocalPrincipal { get; }

    public string LocalApp { get; }

    public string? LocalVersion { get; }

    public string LocalCanonicalService { get; }

    public string? LocalCanonicalRevision { get; }

    /// <summary>The service this workload is reached as when the caller's Host names no known service.</summary>
    public string LocalServiceFqdn { get; }

    /// <summary>Outbound traffic that matched no service: reported as Istio does, to BlackHoleCluster.</summary>
    public IstioWorkloadLabels OutboundBlackHole { get; }

    /// <summary>
    /// reporter=source labels for egress (plain HTTP requests, TLS by SNI, CONNECT tunnels): the
    /// destination is the EgressPolicy that allowed it, or PassthroughCluster under ALLOW_ANY. Never the
    /// host the app named, which a wildcard policy would let the app choose without bound.
    /// </summary>
    /// <param name="policy">The EgressPolicy ("namespace/name") that allowed it; null under ALLOW_ANY.</param>
    public IstioWorkloadLabels Egress(string? policy) =>
        policy is not null ? _egressPolicies.GetOrAdd(policy, EgressPolicyLabels) : _egressPassthrough;

    /// <summary>The workload's canonical service (Istio's label, else its app), which also names its traces' service.</summary>
    public static string CanonicalServiceOf(WorkloadSpec workload) =>
        Label(workload.Labels, "service.istio.io/canonical-name") ?? AppOf(workload);

    public static string SpiffeId(string trustDomain, string ns, string serviceAccount) =>
        $"spiffe://{trustDomain}/ns/{ns}/sa/{serviceAccount}";

    /// <summary>
    /// reporter=source labels for a request to <paramref name="cluster"/>: the destination workload from the
    /// answering sidecar's metadata, and its principal as its certificate proved it (both over mTLS only).
    /// </summary>
    public IstioWorkloadLabels Outbound(Cluster cluster, PeerMetadata? peer, string? principal)
    {
        var labels = _outbound.TryGetValue(cluster, out var known) ? known : OutboundFor(cluster);
        if (principal is not null)
        {
            labels = labels with { DestinationPrincipal = principal };
        }

        return peer is null ? labels : labels with
        {
            DestinationWorkload = peer.Workload,
            DestinationWorkloadNamespace = peer.Namespace,
            DestinationCanonicalService = peer.CanonicalService,
            DestinationCanonicalRevision = peer.CanonicalRevision,
            DestinationApp = peer.App,
            DestinationVersion = peer.Version,
        };
    }

    /// <summary>
    /// reporter=destination labels. The destination service is the known service the caller named in
    /// its Host (resolved without allocating), else this workload's own service name: never the raw
    /// Host, which would let any caller mint series.
    /// </summary>
    public IstioWorkloadLabels Inbound(VirtualHost? calledAs, Identity.PeerIdentity? peer, PeerMetadata? metadata)
    {
        var labels = _inbound;
        if (calledAs is not null && _inboundServices.TryGetValue(calledAs, out var fqdn))
        {
            labels = labels with { DestinationService = fqdn };
        }

        if (peer is null)
        {
            return labels;
        }

        labels = labels with { SourcePrincipal = peer.Principal, SourceWorkloadNamespace = peer.Namespace };

        // A peer may name only a workload of the namespace its certificate proves.
        return metadata is null || metadata.Namespace != peer.Namespace ? labels : labels with
        {
            SourceWorkload = metadata.Workload,
            SourceCanonicalService = metadata.CanonicalService,
            SourceCanonicalRevision = metadata.CanonicalRevision,
            SourceApp = metadata.App,
            SourceVersion = metadata.Version,
        };
    }

    private IstioWorkloadLabels OutboundBase() => new()
    {
        Reporter = Source,
        SourceWorkload = _workload.Name,
        SourceWorkloadNamespace = _workload.Namespace,
        SourcePrincipal = LocalPrincipal,
        SourceApp = LocalApp,
        SourceVersion = LocalVersion,
        SourceCanonicalService = LocalCanonicalService,
        SourceCanonicalRevision = LocalCanonicalRevision,
    };

    private IstioWorkloadLabels OutboundFor(Cluster cluster) => OutboundBase() with
    {
        DestinationService = $"{cluster.ServiceName}.{cluster.ServiceNamespace}.svc.cluster.local",
        DestinationServiceName = cluster.ServiceName,
        DestinationServiceNamespace = cluster.ServiceNamespace,
        DestinationCanonicalService = cluster.ServiceName,

        // A service's endpoints live in its namespace; which workload answers is known only to the peer.
        DestinationWorkloadNamespace = cluster.ServiceNamespace,
    };

    private IstioWorkloadLabels EgressPolicyLabels(string policy)
    {
        var slash = policy.IndexOf('/', StringComparison.Ordinal);
        return _egressPassthrough with
        {
            DestinationServiceName = slash < 0 ? policy : policy[(slash + 1)..],
            DestinationServiceNamespace = slash < 0 ? null : policy[..slash],
        };
    }

    /// <summary>An equal earlier instance if there is one: the registry then finds the series by reference.</summary>
    private static IstioWorkloadLabels Reuse(IstioWorkloadLabels? earlier, IstioWorkloadLabels built) =>
        earlier is { } e && e.Equals(built) ? e : built;

    private static string AppOf(WorkloadSpec workload) =>
        Label(workload.Labels, "app") ?? Label(workload.Labels, "app.kubernetes.io/name") ?? workload.Name;

    private static string? Label(IReadOnlyDictionary<string, string> labels, string name) =>
        labels.TryGetValue(name, out var value) && !string.IsNullOrEmpty(value) ? value : null;
}
