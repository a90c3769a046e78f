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

    /// <summary>A matching request is sent to an external authorization provider (MeshConfig extensionProviders), which decides; evaluated before DENY and ALLOW.</summary>
    Custom,
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
    bool DryRun)
{
    /// <summary>The extension provider a CUSTOM policy asks (provider.name); null for other actions.</summary>
    public string? Provider { get; init; }
}

/// <summary>A rule matches when any From matches, any To matches and every When holds; an absent list does not constrain.</summary>
public sealed record AuthorizationRule(
    IReadOnlyList<AuthorizationSource> From,
    IReadOnlyList<AuthorizationOperation> To,
    IReadOnlyList<AuthorizationCondition> When);

/// <summary>
/// Every non-empty field must hold. A positive field holds when the value matches one entry; a "not"
/// field holds when the value matches none. Principals and namespaces come from the peer's SPIFFE ID;
/// without mTLS there is none, so a positive field never holds and a "not" field always does. Request
/// principals ("iss/sub") come from a JWT a RequestAuthentication validated; likewise absent without one.
/// </summary>
public sealed record AuthorizationSource(
    IReadOnlyList<string> Principals,
    IReadOnlyList<string> NotPrincipals,
    IReadOnlyList<string> Namespaces,
    IReadOnlyList<string> NotNamespaces,
    IReadOnlyList<string> IpBlocks,
    IReadOnlyList<string> NotIpBlocks,
    IReadOnlyList<string> RequestPrincipals,
    IReadOnlyList<string> NotRequestPrincipals);

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

    /// <summary>
    /// The claim path of a request.auth.claims[name] or request.auth.claims[outer][inner] key (Istio's nested
    /// form); null for other keys or a malformed path (empty name, stray bracket).
    /// </summary>
    public IReadOnlyList<string>? ClaimPath => AuthorizationConditionKeys.ParseClaimPath(Key);
}

/// <summary>The `when` keys the engine evaluates.</summary>
public static class AuthorizationConditionKeys
{
    public const string HeaderPrefix = "request.headers[";
    public const string ClaimsPrefix = "request.auth.claims";
    public const string RequestPrincipal = "request.auth.principal";
    public const string RequestAudiences = "request.auth.audiences";
    public const string RequestPresenter = "request.auth.presenter";
    public const string SourceIp = "source.ip";
    public const string SourceNamespace = "source.namespace";
    public const string SourcePrincipal = "source.principal";
    public const string DestinationPort = "destination.port";
    public const string ConnectionSni = "connection.sni";

    public static readonly IReadOnlyList<string> Supported =
    [
        "request.headers[<name>]", SourceIp, SourceNamespace, SourcePrincipal, DestinationPort, ConnectionSni,
        RequestPrincipal, RequestAudiences, RequestPresenter, "request.auth.claims[<name>]([<name>]...)",
    ];

    /// <summary>request.auth.claims[a][b] as ["a", "b"]; null when the key is not a well-formed claims key.</summary>
    public static IReadOnlyList<string>? ParseClaimPath(string key)
    {
        if (!key.StartsWith(ClaimsPrefix + "[", StringComparison.Ordinal) || !key.EndsWith(']'))
        {
            return null;
        }

        var path = new List<string>();
        var rest = key.AsSpan(ClaimsPrefix.Length);
        while (!rest.IsEmpty)
        {
            if (rest[0] != '[')
            {
                return null;
            }

            var close = rest.IndexOf(']');
            var name = rest[1..close];
            if (name.IsEmpty || name.IndexOfAny('[', ']') >= 0)
            {
                return null;
            }

            path.Add(name.ToString());
            rest = rest[(close + 1)..];
        }

        return path.Count is > 0 and <= 8 ? path : null;
    }
}
