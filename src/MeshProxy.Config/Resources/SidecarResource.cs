namespace MeshProxy.Config.Resources;

/// <summary>
/// The workload a sidecar serves and how the sidecar itself listens. In standalone mode this sits in
/// the bootstrap file beside the services and routes; with a control plane it names the workload.
/// </summary>
public sealed record SidecarResource(ObjectMeta Metadata, SourceLocation Source, SidecarSpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "Sidecar";

    public override string Kind => KindName;
}

public sealed record SidecarSpec(
    WorkloadSpec Workload,
    AppSpec App,
    ListenerPorts Listeners,
    TimeSpan DrainDuration,
    ControlPlaneSpec? ControlPlane,
    IReadOnlyList<EgressHost>? Egress = null,
    SidecarTlsSpec? Tls = null,
    int? InboundMaxConnections = null);

/// <summary>Who the workload is: the name, namespace and service account its identity is made of.</summary>
public sealed record WorkloadSpec(string Name, string Namespace, string ServiceAccount, IReadOnlyDictionary<string, string> Labels);

/// <summary>The local application the inbound listener forwards to (always on loopback).</summary>
public sealed record AppSpec(int Port, AppProtocol Protocol);

/// <summary>
/// The sidecar's own ports. Defaults follow Istio's so operators recognise them; 0 asks the kernel for
/// a free port (tests use this).
/// </summary>
public sealed record ListenerPorts(int Outbound, int Inbound, int Admin, int Stats, string InboundAddress, string OutboundAddress)
{
    public static readonly ListenerPorts Default = new(15001, 15006, 15000, 15020, "0.0.0.0", "127.0.0.1");
}

/// <summary>
/// Where the control plane is and how the sidecar proves who it is to it. <see cref="SnapshotPath"/>
/// is where the last applied snapshot is saved, so that a restart during an outage comes up serving.
/// </summary>
public sealed record ControlPlaneSpec(string Address, string? TokenFile, string? SnapshotPath = null, string? CaFile = null);

/// <summary>
/// One entry of Istio's Sidecar egress hosts, "namespace/host": the namespace is a name, "." (the
/// workload's own) or "*" (any); the host is a name, a "*.domain" wildcard or "*" (every host).
/// </summary>
public sealed record EgressHost(string Namespace, string Host)
{
    public bool Matches(string workloadNamespace, string serviceNamespace, string serviceHost) =>
        (Namespace == "*" || (Namespace == "." ? serviceNamespace == workloadNamespace : serviceNamespace == Namespace)) &&
        HostPattern.Matches(Host, serviceHost);

    public override string ToString() => $"{Namespace}/{Host}";
}

/// <summary>
/// The workload's identity from files (standalone mode): an X.509 SVID chain (leaf first), its private key
/// and the trust bundle, all PEM. The sidecar re-reads them whenever they change, so an external issuer
/// (cert-manager, SPIRE's helper) can rotate them in place. Paths are absolute, or relative to the file
/// the resource was read from.
/// </summary>
public sealed record SidecarTlsSpec(string CertificateChainFile, string PrivateKeyFile, string TrustBundleFile);
