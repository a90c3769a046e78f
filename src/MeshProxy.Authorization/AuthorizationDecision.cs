using MeshProxy.Config.Resources;

namespace MeshProxy.Authorization;

/// <summary>A policy as the decision names it; built once per snapshot so that decisions allocate nothing.</summary>
internal sealed class PolicyInfo(string @namespace, string name, AuthorizationAction action, bool dryRun, string? provider = null)
{
    public string Namespace { get; } = @namespace;

    public string Name { get; } = name;

    public AuthorizationAction Action { get; } = action;

    public bool DryRun { get; } = dryRun;

    /// <summary>The extension provider a CUSTOM policy asks; null for other actions.</summary>
    public string? Provider { get; } = provider;

    /// <summary>namespace/name, as logs and the CLI show it.</summary>
    public string Key { get; } = $"{@namespace}/{name}";

    public string ActionName => Action switch
    {
        AuthorizationAction.Deny => "DENY",
        AuthorizationAction.Audit => "AUDIT",
        AuthorizationAction.Custom => "CUSTOM",
        _ => "ALLOW",
    };
}

/// <summary>A CUSTOM policy's rule matched: the request goes to <see cref="PolicyInfo.Provider"/> before DENY and ALLOW are evaluated.</summary>
internal readonly record struct CustomMatch(PolicyInfo Policy, int RuleIndex)
{
    public string Provider => Policy.Provider!;

    public override string ToString() => $"sent to provider {Provider} by CUSTOM policy {Policy.Key} rule {RuleIndex}";
}

internal enum DecisionReason
{
    /// <summary>No ALLOW policy applies to the workload (and no DENY matched): Istio allows.</summary>
    AllowedNoAllowPolicy,
    AllowedByPolicy,
    DeniedByPolicy,
    /// <summary>ALLOW policies apply to the workload and none matched: default deny.</summary>
    DeniedNoAllowMatched,
}

/// <summary>One outcome of evaluation: allowed or denied, and what decided it.</summary>
internal readonly record struct Verdict(DecisionReason Reason, PolicyInfo? Policy, int RuleIndex, int AllowPolicyCount)
{
    public bool Allowed => Reason is DecisionReason.AllowedNoAllowPolicy or DecisionReason.AllowedByPolicy;

    public override string ToString() => Reason switch
    {
        DecisionReason.AllowedByPolicy => $"allowed by {Policy!.ActionName} policy {Policy.Key} rule {RuleIndex}",
        DecisionReason.DeniedByPolicy => $"denied by {Policy!.ActionName} policy {Policy.Key} rule {RuleIndex}",
        DecisionReason.DeniedNoAllowMatched => $"denied: no ALLOW policy matched ({AllowPolicyCount} apply)",
        _ => "allowed: no ALLOW policy applies",
    };
}

/// <summary>
/// The result of <see cref="AuthorizationEngine.Evaluate"/>. <see cref="Enforced"/> is what happens to
/// the request. <see cref="DryRun"/>, present when dry-run policies apply to the workload, is what would
/// happen if they were enforced together with the others. <see cref="AuditPolicy"/> names the first
/// AUDIT policy that matched, if any.
/// </summary>
internal readonly record struct AuthorizationDecision(Verdict Enforced, Verdict? DryRun, PolicyInfo? AuditPolicy, int AuditRuleIndex)
{
    public bool Allowed => Enforced.Allowed;

    /// <summary>Enforcing the dry-run policies would deny this request although it is allowed now.</summary>
    public bool WouldDeny => DryRun is { Allowed: false } && Enforced.Allowed;

    /// <summary>Enforcing the dry-run policies would allow this request although it is denied now.</summary>
    public bool WouldAllow => DryRun is { Allowed: true } && !Enforced.Allowed;

    /// <summary>A short sentence for logs, the 403 body and the CLI's explain command.</summary>
    public string Explain()
    {
        var text = Enforced.ToString();
        if (AuditPolicy is not null)
        {
            text += $"; audited by AUDIT policy {AuditPolicy.Key} rule {AuditRuleIndex}";
        }

        if (DryRun is { } dry)
        {
            text += $"; dry run: would be {dry}";
        }

        return text;
    }

    public override string ToString() => Explain();
}
