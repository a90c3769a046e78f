namespace MeshProxy.Config.Resources;

/// <summary>
/// Which workloads may reach which hosts outside the mesh. Selects workloads of its own namespace by
/// label (all of them without a selector); in the mesh's root namespace it applies to every workload
/// of the mesh. Several policies that apply to a workload add up.
/// </summary>
public sealed record EgressPolicyResource(ObjectMeta Metadata, SourceLocation Source, EgressPolicySpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "EgressPolicy";

    public override string Kind => KindName;
}

/// <param name="Selector">Labels a workload must all carry; null selects every workload in scope.</param>
/// <param name="Hosts">Exact names ("api.example.com") or a wildcard for one or more leading labels ("*.example.com").</param>
public sealed record EgressPolicySpec(
    IReadOnlyDictionary<string, string>? Selector,
    IReadOnlyList<string> Hosts,
    IReadOnlyList<EgressPort> Ports)
{
    /// <summary>True when the workload's labels carry every label of the selector.</summary>
    public bool Selects(IReadOnlyDictionary<string, string> workloadLabels) =>
        Selector is null || Selector.All(l => workloadLabels.TryGetValue(l.Key, out var v) && v == l.Value);

    /// <summary>Whether this policy allows <paramref name="host"/> (compared case-insensitively).</summary>
    public bool AllowsHost(string host) => Hosts.Any(h => HostPattern.Matches(h, host));
}

/// <summary>An allowed port and what is spoken on it (HTTP is plaintext; HTTPS and TLS are passed through by SNI).</summary>
public sealed record EgressPort(int Number, EgressProtocol Protocol);

public enum EgressProtocol
{
    Http,
    Https,
    Tls,
    Tcp,
}

public static class HostPattern
{
    /// <summary>"*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com"; "*" matches anything.</summary>
    public static bool Matches(string pattern, string host)
    {
        if (pattern == "*")
        {
            return true;
        }

        if (pattern.StartsWith("*.", StringComparison.Ordinal))
        {
            return host.Length > pattern.Length - 1 && host.EndsWith(pattern.AsSpan(1), StringComparison.OrdinalIgnoreCase);
        }

        return string.Equals(pattern, host, StringComparison.OrdinalIgnoreCase);
    }
}
