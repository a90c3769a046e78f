using MeshProxy.Authorization;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Authorization;

internal static partial class AuthorizationLog
{
    [LoggerMessage(EventId = 4001, EventName = "RequestDenied", Level = LogLevel.Information,
        Message = "Denied {Method} {Path} (sent as {SentPath}) from {Principal}: {Reason} (policy {Policy}, rule {Rule})")]
    public static partial void RequestDenied(ILogger logger, string method, string path, string sentPath, string principal, string reason, string policy, int rule);

    [LoggerMessage(EventId = 4002, EventName = "DryRunWouldDeny", Level = LogLevel.Information,
        Message = "Dry run would deny {Method} {Path} (sent as {SentPath}) from {Principal}: {Reason} (policy {Policy}, rule {Rule})")]
    public static partial void DryRunWouldDeny(ILogger logger, string method, string path, string sentPath, string principal, string reason, string policy, int rule);

    [LoggerMessage(EventId = 4003, EventName = "RequestRejected", Level = LogLevel.Information,
        Message = "Rejected {Method} {RawPath} from {Principal} before authorization: {Rejection}")]
    public static partial void RequestRejected(ILogger logger, string method, string rawPath, string principal, string rejection);

    [LoggerMessage(EventId = 4004, EventName = "PoliciesCompiled", Level = LogLevel.Information,
        Message = "Authorization: {Count} policies apply to this workload ({Policies})")]
    public static partial void PoliciesCompiled(ILogger logger, int count, string policies);

    [LoggerMessage(EventId = 4005, EventName = "RequestAudited", Level = LogLevel.Information,
        Message = "Audited {Method} {Path} (sent as {SentPath}) from {Principal}: {Verdict} (AUDIT policy {Policy}, rule {Rule})")]
    public static partial void RequestAudited(ILogger logger, string method, string path, string sentPath, string principal, string verdict, string policy, int rule);

    [LoggerMessage(EventId = 4006, EventName = "ConnectionDenied", Level = LogLevel.Information,
        Message = "Denied TCP connection to port {Port} from {Principal} ({Source}): {Reason} (policy {Policy}, rule {Rule})")]
    public static partial void ConnectionDenied(ILogger logger, int port, string principal, string? source, string reason, string policy, int rule);

    [LoggerMessage(EventId = 4007, EventName = "ConnectionAudited", Level = LogLevel.Information,
        Message = "Audited TCP connection to port {Port} from {Principal}: {Verdict} (AUDIT policy {Policy}, rule {Rule})")]
    public static partial void ConnectionAudited(ILogger logger, int port, string principal, string verdict, string policy, int rule);

    [LoggerMessage(EventId = 4008, EventName = "ConnectionDryRunWouldDeny", Level = LogLevel.Information,
        Message = "Dry run would deny TCP connection to port {Port} from {Principal}: {Reason} (policy {Policy}, rule {Rule})")]
    public static partial void ConnectionWouldBeDenied(ILogger logger, int port, string principal, string reason, string policy, int rule);

    /// <summary>A TCP connection's denial, dry-run "would deny" or AUDIT match: as for a request, without method or path.</summary>
    public static void ConnectionDecision(ILogger logger, in AuthorizationRequest request, in AuthorizationDecision decision)
    {
        if (!logger.IsEnabled(LogLevel.Information) || (decision.Allowed && !decision.WouldDeny && decision.AuditPolicy is null))
        {
            return;
        }

        var principal = request.Principal ?? "(plaintext)";
        if (decision.AuditPolicy is { } audit)
        {
            var verdict = decision.Enforced.ToString();
            ConnectionAudited(logger, request.Port, principal, verdict, audit.Key, decision.AuditRuleIndex);
        }

        if (!decision.Allowed)
        {
            var reason = decision.Explain();
            var source = request.SourceIp?.ToString();
            var policy = decision.Enforced.Policy?.Key ?? "-";
            ConnectionDenied(logger, request.Port, principal, source, reason, policy, decision.Enforced.RuleIndex);
        }
        else if (decision.WouldDeny && decision.DryRun is { } dry)
        {
            var reason = dry.ToString();
            var policy = dry.Policy?.Key ?? "-";
            ConnectionWouldBeDenied(logger, request.Port, principal, reason, policy, dry.RuleIndex);
        }
    }

    /// <summary>Logs a denial (or a dry-run "would deny") with the policy and rule that decided it, and an AUDIT policy's match whatever the verdict.</summary>
    /// <remarks>
    /// A line names the path as matched (normalized) and as sent (the raw request target up to '?'), so that
    /// an operator sees which spelling a caller used; the raw target is looked up only when a line is written.
    /// </remarks>
    public static void Decision(ILogger logger, HttpContext context, in AuthorizationRequest request, in AuthorizationDecision decision)
    {
        if (!logger.IsEnabled(LogLevel.Information) || (decision.Allowed && !decision.WouldDeny && decision.AuditPolicy is null))
        {
            return;
        }

        var principal = request.Principal ?? "(plaintext)";
        var sent = SentPath(context);
        if (decision.AuditPolicy is { } audit)
        {
            // What an AUDIT policy is for (Istio: the request is marked for audit logging): one line per
            // matched request, allowed or denied, with the verdict the enforced policies reached.
            var verdict = decision.Enforced.ToString();
            RequestAudited(logger, request.Method, request.Path, sent, principal, verdict, audit.Key, decision.AuditRuleIndex);
        }

        if (!decision.Allowed)
        {
            var reason = decision.Explain();
            RequestDenied(logger, request.Method, request.Path, sent, principal, reason,
                decision.Enforced.Policy?.Key ?? "-", decision.Enforced.RuleIndex);
        }
        else if (decision.WouldDeny && decision.DryRun is { } dry)
        {
            var reason = dry.ToString();
            DryRunWouldDeny(logger, request.Method, request.Path, sent, principal, reason, dry.Policy?.Key ?? "-", dry.RuleIndex);
        }
    }

    /// <summary>The path as the caller sent it: the raw request target without its query.</summary>
    private static string SentPath(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? string.Empty;
        var query = raw.IndexOf('?', StringComparison.Ordinal);
        return query < 0 ? raw : raw[..query];
    }
}
