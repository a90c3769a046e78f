namespace MeshProxy.Config.Resources;

/// <summary>
/// Access control for workloads, in the shape and with the semantics of Istio's AuthorizationPolicy:
/// a selector picks the workloads, the action says what a matching rule does, and the rules say which
/// requests match. The sidecar compiles these; see src/MeshProxy.Authorization/README.md.
/// </summary>
public sealed record AuthorizationPolicyResource(ObjectMeta Metadata, SourceLocation Source, AuthorizationPolicySpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "AuthorizationPolicy";

    /// <summary>Istio's annotation: the policy is evaluated and reported, never enforced.</summary>
    public const string DryRunAnnotation = "istio.io/dry-run";

    public override string Kind => KindName;
}

public enum AuthorizationAction
{
    Allow,
    Deny,
    Audit,
}

/// <summary>
/// <see cref="MatchLabels"/> empty selects every workload of the policy's namespace (or of the mesh, in
/// the root namespace). <see cref="Rules"/> empty matches nothing: an ALLOW policy without rules
/// therefore denies everything (Istio's "allow-nothing"); a rule with no from, to or when matches
/// everything. <see cref="DryRun"/> is true when either spec.dryRun or the istio.io/dry-run annotation is.
/// </summary>
public sealed record AuthorizationPolicySpec(
    IReadOnlyDictionary<string, string> MatchLabels,
    AuthorizationAction Action,
    IReadOnlyList<AuthorizationRule> Rules,
    bool DryRun);

/// <summary>A rule matches when any From matches, any To matches and every When holds; an absent list does not constrain.</summary>
public sealed record AuthorizationRule(
    IReadOnlyList<AuthorizationSource> From,
    IReadOnlyList<AuthorizationOperation> To,
    IReadOnlyList<AuthorizationCondition> When);

/// <summary>
/// Every non-empty field must hold. A positive field holds when the value matches one entry; a "not"
/// field holds when the value matches none. Principals and namespaces come from the peer's SPIFFE ID;
/// without mTLS there is none, so a positive field never holds and a "not" field always does.
/// </summary>
public sealed record AuthorizationSource(
    IReadOnlyList<string> Principals,
    IReadOnlyList<string> NotPrincipals,
    IReadOnlyList<string> Namespaces,
    IReadOnlyList<string> NotNamespaces,
    IReadOnlyList<string> IpBlocks,
    IReadOnlyList<string> NotIpBlocks);

public sealed record AuthorizationOperation(
    IReadOnlyList<string> Hosts,
    IReadOnlyList<string> NotHosts,
    IReadOnlyList<int> Ports,
    IReadOnlyList<int> NotPorts,
    IReadOnlyList<string> Methods,
    IReadOnlyList<string> NotMethods,
    IReadOnlyList<string> Paths,
    IReadOnlyList<string> NotPaths);

/// <summary>One `when` entry: <see cref="Key"/> is one of <see cref="AuthorizationConditionKeys"/>.</summary>
public sealed record AuthorizationCondition(string Key, IReadOnlyList<string> Values, IReadOnlyList<string> NotValues)
{
    /// <summary>The header name of a request.headers[name] key, lowercased; null for other keys.</summary>
    public string? HeaderName =>
        Key.StartsWith(AuthorizationConditionKeys.HeaderPrefix, StringComparison.Ordinal) && Key.EndsWith(']')
            ? Key[AuthorizationConditionKeys.HeaderPrefix.Length..^1].ToLowerInvariant()
            : null;
}

/// <summary>The `when` keys that make sense without JWT authentication.</summary>
public static class AuthorizationConditionKeys
{
    public const string HeaderPrefix = "request.headers[";
    public const string SourceIp = "source.ip";
    public const string SourceNamespace = "source.namespace";
    public const string SourcePrincipal = "source.principal";
    public const string DestinationPort = "destination.port";
    public const string ConnectionSni = "connection.sni";

    public static readonly IReadOnlyList<string> Supported =
        ["request.headers[<name>]", SourceIp, SourceNamespace, SourcePrincipal, DestinationPort, ConnectionSni];
}
