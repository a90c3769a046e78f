using MeshProxy.Authorization;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Authorization;

internal static partial class AuthorizationLog
{
    [LoggerMessage(EventId = 4001, EventName = "RequestDenied", Level = LogLevel.Information,
        Message = "Denied {Method} {Path} from {Principal}: {Reason} (policy {Policy}, rule {Rule})")]
    public static partial void RequestDenied(ILogger logger, string method, string path, string principal, string reason, string policy, int rule);

    [LoggerMessage(EventId = 4002, EventName = "DryRunWouldDeny", Level = LogLevel.Information,
        Message = "Dry run would deny {Method} {Path} from {Principal}: {Reason} (policy {Policy}, rule {Rule})")]
    public static partial void DryRunWouldDeny(ILogger logger, string method, string path, string principal, string reason, string policy, int rule);

    [LoggerMessage(EventId = 4003, EventName = "RequestRejected", Level = LogLevel.Information,
        Message = "Rejected {Method} {RawPath} from {Principal} before authorization: {Rejection}")]
    public static partial void RequestRejected(ILogger logger, string method, string rawPath, string principal, string rejection);

    [LoggerMessage(EventId = 4004, EventName = "PoliciesCompiled", Level = LogLevel.Information,
        Message = "Authorization: {Count} policies apply to this workload ({Policies})")]
    public static partial void PoliciesCompiled(ILogger logger, int count, string policies);

    [LoggerMessage(EventId = 4005, EventName = "RequestAudited", Level = LogLevel.Information,
        Message = "Audited {Method} {Path} from {Principal}: {Verdict} (AUDIT policy {Policy}, rule {Rule})")]
    public static partial void RequestAudited(ILogger logger, string method, string path, string principal, string verdict, string policy, int rule);

    /// <summary>Logs a denial (or a dry-run "would deny") with the policy and rule that decided it, and an AUDIT policy's match whatever the verdict.</summary>
    public static void Decision(ILogger logger, in AuthorizationRequest request, in AuthorizationDecision decision)
    {
        if (!logger.IsEnabled(LogLevel.Information))
        {
            return;
        }

        var principal = request.Principal ?? "(plaintext)";
        if (decision.AuditPolicy is { } audit)
        {
            // What an AUDIT policy is for (Istio: the request is marked for audit logging): one line per
            // matched request, allowed or denied, with the verdict the enforced policies reached.
            var verdict = decision.Enforced.ToString();
            RequestAudited(logger, request.Method, request.Path, principal, verdict, audit.Key, decision.AuditRuleIndex);
        }

        if (!decision.Allowed)
        {
            var reason = decision.Explain();
            RequestDenied(logger, request.Method, request.Path, principal, reason,
                decision.Enforced.Policy?.Key ?? "-", decision.Enforced.RuleIndex);
        }
        else if (decision.WouldDeny && decision.DryRun is { } dry)
        {
            var reason = dry.ToString();
            DryRunWouldDeny(logger, request.Method, request.Path, principal, reason, dry.Policy?.Key ?? "-", dry.RuleIndex);
        }
    }
}
