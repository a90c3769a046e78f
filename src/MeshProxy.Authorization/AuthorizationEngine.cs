using MeshProxy.Config.Resources;

namespace MeshProxy.Authorization;

/// <summary>
/// The authorization policies that apply to one workload, compiled. Built once per configuration
/// snapshot; <see cref="Evaluate"/> is then a pure function of the request and allocates nothing.
/// Semantics are Istio's (see README.md in this folder): a request a CUSTOM policy matches is first sent to
/// that policy's provider (<see cref="MatchCustom"/>; the caller asks it, and a denial ends there); then a
/// matching DENY denies; otherwise, with no ALLOW policy applying, the request is allowed; otherwise a
/// matching ALLOW allows and anything else is denied. AUDIT policies are reported, never decide. Dry-run
/// policies are evaluated on the side.
/// </summary>
internal sealed class AuthorizationEngine
{
    public const string DefaultRootNamespace = "meshproxy-system";

    private readonly CompiledPolicy[] _deny;
    private readonly CompiledPolicy[] _allow;
    private readonly CompiledPolicy[] _audit;
    private readonly CompiledPolicy[] _custom;
    private readonly CompiledPolicy[] _dryRunDeny;
    private readonly CompiledPolicy[] _dryRunAllow;

    private AuthorizationEngine(List<CompiledPolicy> policies)
    {
        _deny = Select(policies, AuthorizationAction.Deny, dryRun: false);
        _allow = Select(policies, AuthorizationAction.Allow, dryRun: false);
        _audit = Select(policies, AuthorizationAction.Audit, dryRun: false);
        _custom = Select(policies, AuthorizationAction.Custom, dryRun: false);
        CustomProviders = [.. _custom.Select(p => p.Info.Provider!).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
        _dryRunDeny = Select(policies, AuthorizationAction.Deny, dryRun: true);
        _dryRunAllow = Select(policies, AuthorizationAction.Allow, dryRun: true);
        Policies = [.. policies.Select(p => p.Info)];
    }

    /// <summary>The policies that apply to the workload, in evaluation order (namespace, then name).</summary>
    public IReadOnlyList<PolicyInfo> Policies { get; }

    /// <summary>The providers the CUSTOM policies name, sorted. Istio allows one per workload; the sidecar fails closed on more.</summary>
    public IReadOnlyList<string> CustomProviders { get; }

    /// <summary>The first CUSTOM policy (in evaluation order) a rule of which matches: the request must be checked by its provider before <see cref="Evaluate"/>.</summary>
    public CustomMatch? MatchCustom(in AuthorizationRequest request) =>
        _custom.Length == 0 ? null
        : FirstMatch(_custom, request, out var rule) is { } policy ? new CustomMatch(policy.Info, rule)
        : null;

    /// <summary>
    /// Keeps the policies that apply to the workload: those in its own namespace and those in the root
    /// namespace (mesh-wide), whose matchLabels (if any) are all among the workload's labels.
    /// </summary>
    public static AuthorizationEngine Build(
        IEnumerable<AuthorizationPolicyResource> policies,
        string workloadNamespace,
        IReadOnlyDictionary<string, string> workloadLabels,
        string rootNamespace = DefaultRootNamespace)
    {
        var applying = policies
            .Where(p => p.Metadata.Namespace == workloadNamespace || p.Metadata.Namespace == rootNamespace)
            .Where(p => p.Spec.MatchLabels.All(l => workloadLabels.TryGetValue(l.Key, out var v) && v == l.Value))
            .OrderBy(p => p.Metadata.Namespace, StringComparer.Ordinal)
            .ThenBy(p => p.Metadata.Name, StringComparer.Ordinal)
            .Select(p => new CompiledPolicy(p))
            .ToList();
        return new AuthorizationEngine(applying);
    }

    public AuthorizationDecision Evaluate(in AuthorizationRequest request)
    {
        var denied = FirstMatch(_deny, request, out var denyRule);
        Verdict enforced;
        CompiledPolicy? allowedBy = null;
        var allowRule = -1;
        if (denied is not null)
        {
            enforced = new Verdict(DecisionReason.DeniedByPolicy, denied.Info, denyRule, _allow.Length);
        }
        else if (_allow.Length == 0)
        {
            enforced = new Verdict(DecisionReason.AllowedNoAllowPolicy, null, -1, 0);
        }
        else
        {
            allowedBy = FirstMatch(_allow, request, out allowRule);
            enforced = allowedBy is not null
                ? new Verdict(DecisionReason.AllowedByPolicy, allowedBy.Info, allowRule, _allow.Length)
                : new Verdict(DecisionReason.DeniedNoAllowMatched, null, -1, _allow.Length);
        }

        var audited = FirstMatch(_audit, request, out var auditRule);
        Verdict? dryRun = _dryRunDeny.Length + _dryRunAllow.Length == 0
            ? null
            : EvaluateWithDryRun(request, enforced, allowedBy, allowRule);
        return new AuthorizationDecision(enforced, dryRun, audited?.Info, auditRule);
    }

    /// <summary>The verdict if the dry-run policies were enforced alongside the others.</summary>
    private Verdict EvaluateWithDryRun(in AuthorizationRequest request, Verdict enforced, CompiledPolicy? allowedBy, int allowRule)
    {
        if (enforced.Reason == DecisionReason.DeniedByPolicy)
        {
            return enforced;
        }

        if (FirstMatch(_dryRunDeny, request, out var rule) is { } deny)
        {
            return new Verdict(DecisionReason.DeniedByPolicy, deny.Info, rule, _allow.Length + _dryRunAllow.Length);
        }

        var allowCount = _allow.Length + _dryRunAllow.Length;
        if (allowCount == 0)
        {
            return new Verdict(DecisionReason.AllowedNoAllowPolicy, null, -1, 0);
        }

        if (allowedBy is not null)
        {
            return new Verdict(DecisionReason.AllowedByPolicy, allowedBy.Info, allowRule, allowCount);
        }

        return FirstMatch(_dryRunAllow, request, out rule) is { } allow
            ? new Verdict(DecisionReason.AllowedByPolicy, allow.Info, rule, allowCount)
            : new Verdict(DecisionReason.DeniedNoAllowMatched, null, -1, allowCount);
    }

    private static CompiledPolicy? FirstMatch(CompiledPolicy[] policies, in AuthorizationRequest request, out int ruleIndex)
    {
        foreach (var policy in policies)
        {
            ruleIndex = policy.MatchingRule(request);
            if (ruleIndex >= 0)
            {
                return policy;
            }
        }

        ruleIndex = -1;
        return null;
    }

    private static CompiledPolicy[] Select(List<CompiledPolicy> policies, AuthorizationAction action, bool dryRun) =>
        [.. policies.Where(p => p.Info.Action == action && p.Info.DryRun == dryRun)];

    private sealed class CompiledPolicy(AuthorizationPolicyResource policy)
    {
        // No rules: the policy matches nothing (an ALLOW without rules allows nothing).
        private readonly RuleMatcher[] _rules = [.. policy.Spec.Rules.Select(r => new RuleMatcher(r, policy.Spec.Action))];

        // The same rules as a TCP connection reads them (TcpRules): null where the rule never matches one.
        private readonly RuleMatcher?[] _tcpRules = [.. policy.Spec.Rules.Select(r => TcpRules.ForTcp(r, policy.Spec.Action) is { } tcp ? new RuleMatcher(tcp, policy.Spec.Action) : null)];

        public PolicyInfo Info { get; } = new(policy.Metadata.Namespace, policy.Metadata.Name, policy.Spec.Action, policy.Spec.DryRun, policy.Spec.Provider);

        public int MatchingRule(in AuthorizationRequest request)
        {
            var rules = request.IsTcp ? _tcpRules : _rules;
            for (var i = 0; i < rules.Length; i++)
            {
                if (rules[i]?.Matches(request) == true)
                {
                    return i;
                }
            }

            return -1;
        }
    }
}
