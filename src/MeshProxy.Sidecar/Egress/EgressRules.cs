using System.Collections.Frozen;
using MeshProxy.Config.Resources;

namespace MeshProxy.Sidecar.Egress;

/// <summary>What kind of egress traffic is being decided: each admits different port protocols.</summary>
internal enum EgressTraffic
{
    /// <summary>Plain HTTP, decided on Host: admitted by HTTP ports.</summary>
    Http,

    /// <summary>TLS the app speaks itself, decided on SNI: admitted by HTTPS and TLS ports.</summary>
    Tls,

    /// <summary>An HTTP CONNECT tunnel: opaque bytes to host:port, admitted by a port of any protocol.</summary>
    Tunnel,
}

internal enum EgressVerdict
{
    Denied,

    /// <summary>An EgressPolicy names this host and port: the name must resolve to the address used.</summary>
    AllowedByPolicy,

    /// <summary>No policy names it, and the mesh's outboundTrafficPolicy is ALLOW_ANY.</summary>
    AllowedAny,
}

/// <param name="Policy">"namespace/name" of the policy that allowed it, when one did.</param>
internal readonly record struct EgressDecision(EgressVerdict Verdict, string? Policy)
{
    public bool Allowed => Verdict != EgressVerdict.Denied;
}

/// <summary>
/// The EgressPolicies in force for this workload, compiled once per snapshot into a lookup: exact
/// names in one frozen dictionary, wildcard suffixes in another, probed label by label with span
/// lookups so a decision allocates nothing.
/// </summary>
internal sealed class EgressRules
{
    private readonly FrozenDictionary<string, Rule[]> _exact;
    private readonly FrozenDictionary<string, Rule[]>.AlternateLookup<ReadOnlySpan<char>> _exactLookup;

    // Keyed by the suffix with its leading dot: "*.example.test" is stored as ".example.test".
    private readonly FrozenDictionary<string, Rule[]> _wildcards;
    private readonly FrozenDictionary<string, Rule[]>.AlternateLookup<ReadOnlySpan<char>> _wildcardLookup;

    private EgressRules(Dictionary<string, List<Rule>> exact, Dictionary<string, List<Rule>> wildcards, OutboundTrafficMode mode, int policyCount)
    {
        _exact = exact.ToFrozenDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.OrdinalIgnoreCase);
        _exactLookup = _exact.GetAlternateLookup<ReadOnlySpan<char>>();
        _wildcards = wildcards.ToFrozenDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.OrdinalIgnoreCase);
        _wildcardLookup = _wildcards.GetAlternateLookup<ReadOnlySpan<char>>();
        Mode = mode;
        PolicyCount = policyCount;
    }

    public OutboundTrafficMode Mode { get; }

    /// <summary>How many EgressPolicies apply to this workload (for /config_dump and tests).</summary>
    public int PolicyCount { get; }

    /// <summary>
    /// Picks the policies that apply to the workload (its own namespace with a matching selector, or
    /// the root namespace mesh-wide) and compiles them.
    /// </summary>
    public static EgressRules Compile(IEnumerable<EgressPolicyResource> policies, SidecarResource sidecar, MeshConfigSpec mesh)
    {
        var workload = sidecar.Spec.Workload;
        var exact = new Dictionary<string, List<Rule>>(StringComparer.OrdinalIgnoreCase);
        var wildcards = new Dictionary<string, List<Rule>>(StringComparer.OrdinalIgnoreCase);
        var count = 0;
        foreach (var policy in policies)
        {
            var ns = policy.Metadata.Namespace;
            if ((ns != workload.Namespace && ns != mesh.RootNamespace) || !policy.Spec.Selects(workload.Labels))
            {
                continue;
            }

            count++;
            var name = $"{ns}/{policy.Metadata.Name}";
            foreach (var host in policy.Spec.Hosts)
            {
                var normalized = host.TrimEnd('.');
                var (table, key) = normalized.StartsWith("*.", StringComparison.Ordinal)
                    ? (wildcards, normalized[1..])
                    : (exact, normalized);
                if (!table.TryGetValue(key, out var rules))
                {
                    table[key] = rules = [];
                }

                rules.AddRange(policy.Spec.Ports.Select(p => new Rule(name, p.Number, p.Protocol)));
            }
        }

        return new EgressRules(exact, wildcards, mesh.OutboundTrafficPolicy, count);
    }

    /// <summary>No policy at all, under the given mode.</summary>
    public static EgressRules Empty(OutboundTrafficMode mode) => new([], [], mode, 0);

    public EgressDecision Decide(ReadOnlySpan<char> host, int port, EgressTraffic traffic)
    {
        host = host.TrimEnd('.');
        if (host.Length > 0)
        {
            if (_exactLookup.TryGetValue(host, out var rules) && Match(rules, port, traffic) is { } byName)
            {
                return new EgressDecision(EgressVerdict.AllowedByPolicy, byName);
            }

            // "*.example.test" matches any depth below example.test: try ".b.example.test", ".example.test", ".test".
            for (var dot = host.IndexOf('.'); dot > 0 && _wildcards.Count > 0; dot = NextDot(host, dot))
            {
                if (_wildcardLookup.TryGetValue(host[dot..], out var suffixRules) && Match(suffixRules, port, traffic) is { } bySuffix)
                {
                    return new EgressDecision(EgressVerdict.AllowedByPolicy, bySuffix);
                }
            }
        }

        return Mode == OutboundTrafficMode.AllowAny
            ? new EgressDecision(EgressVerdict.AllowedAny, null)
            : new EgressDecision(EgressVerdict.Denied, null);
    }

    private static int NextDot(ReadOnlySpan<char> host, int dot)
    {
        var next = host[(dot + 1)..].IndexOf('.');
        return next < 0 ? -1 : dot + 1 + next;
    }

    private static string? Match(Rule[] rules, int port, EgressTraffic traffic)
    {
        foreach (var rule in rules)
        {
            if (rule.Port == port && Admits(rule.Protocol, traffic))
            {
                return rule.Policy;
            }
        }

        return null;
    }

    private static bool Admits(EgressProtocol protocol, EgressTraffic traffic) => traffic switch
    {
        EgressTraffic.Http => protocol == EgressProtocol.Http,
        EgressTraffic.Tls => protocol is EgressProtocol.Https or EgressProtocol.Tls,
        _ => true,
    };

    private sealed record Rule(string Policy, int Port, EgressProtocol Protocol);
}
