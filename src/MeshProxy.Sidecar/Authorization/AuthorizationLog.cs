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

    /// <summary>Logs a denial (or a dry-run "would deny") with the policy and rule that decided it.</summary>
    public static void Decision(ILogger logger, in AuthorizationRequest request, in AuthorizationDecision decision)
    {
        if (!logger.IsEnabled(LogLevel.Information))
        {
            return;
        }

        var principal = request.Principal ?? "(plaintext)";
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
