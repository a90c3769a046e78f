namespace MeshProxy.Config.Resources;

/// <summary>
/// Which inbound connections a workload accepts, in the shape and with the semantics of Istio's
/// PeerAuthentication: mesh-wide in the root namespace without a selector, namespace-wide without one,
/// for the workloads its selector matches with one; the most specific policy that sets a mode wins
/// (<see cref="PeerAuthenticationResolver"/>).
/// </summary>
public sealed record PeerAuthenticationResource(ObjectMeta Metadata, SourceLocation Source, PeerAuthenticationSpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "PeerAuthentication";

    public override string Kind => KindName;
}

/// <param name="MatchLabels">Labels a workload must all carry; empty: the policy is namespace-wide (mesh-wide in the root namespace).</param>
/// <param name="Mode">The mode it sets; null is UNSET: inherited from the less specific policy.</param>
/// <param name="PortLevel">Modes per workload (target) port, only with a selector; a null mode inherits the policy's own.</param>
public sealed record PeerAuthenticationSpec(
    IReadOnlyDictionary<string, string> MatchLabels,
    MtlsMode? Mode,
    IReadOnlyDictionary<int, MtlsMode?> PortLevel)
{
    public bool HasSelector => MatchLabels.Count > 0;

    /// <summary>True when the workload's labels carry every label of the selector (false without one: it is no workload-scope policy).</summary>
    public bool SelectsWorkload(IReadOnlyDictionary<string, string> workloadLabels) =>
        HasSelector && MatchLabels.All(l => workloadLabels.TryGetValue(l.Key, out var v) && v == l.Value);
}
