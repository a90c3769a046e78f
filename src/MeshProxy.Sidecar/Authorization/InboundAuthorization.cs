using MeshProxy.Authorization;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Listeners;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Authorization;

/// <summary>
/// The pieces of the inbound pipeline's authorization step that touch the HTTP request: finding the
/// raw path, making the normalized one what the app receives, gathering the request for the engine,
/// and reporting the decision. On an allowed request with a clean path none of it allocates.
/// </summary>
internal static class InboundAuthorization
{
    public const string Allow = "allow";
    public const string Deny = "deny";
    public const string WouldDeny = "would_deny";

    /// <summary>A request refused with 400 before evaluation (method case, path spelling).</summary>
    public const string Reject = "reject";

    /// <summary>Envoy's body for an RBAC denial. The policy is not named: a caller learns nothing about the policy set; operators have the log line, the metric and `meshproxy explain`.</summary>
    public const string DeniedBody = "RBAC: access denied";

    /// <summary>
    /// The path of the raw request target (up to '?'), normalized. The raw target is what the caller
    /// sent; HttpRequest.Path has been percent-decoded and dot-resolved by Kestrel, which would hide
    /// "%25" and friends from the normalizer. An absolute-form or '*' target has no origin-form path and
    /// is refused (NotAbsolute): callers in the mesh send origin-form.
    /// </summary>
    public static bool TryNormalizePath(HttpContext context, PathNormalizationSpec options, out string path, out PathRejection rejection)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? string.Empty;
        var query = raw.IndexOf('?', StringComparison.Ordinal);
        var rawPath = query < 0 ? raw.AsSpan() : raw.AsSpan(0, query);

        // The common case: Kestrel's decoded path is the raw one (nothing to decode or resolve). Reusing
        // its string keeps this allocation-free.
        var decoded = context.Request.Path.Value;
        var input = decoded is not null && rawPath.SequenceEqual(decoded) ? decoded
            : query < 0 ? raw
            : raw[..query];
        return PathNormalizer.TryNormalize(input, options, out path, out rejection);
    }

    /// <summary>
    /// Makes <paramref name="path"/> the path the app receives. HttpRequest.Path (for telemetry and the
    /// access log) holds its decoded form; the exact normalized spelling travels to the forwarder in
    /// <see cref="AuthorizedPathFeature"/>, because YARP rebuilds the upstream URI from the decoded path
    /// and would send "%40" as "@" (its own re-encoding, not the matched spelling): the app
    /// must see the path that was matched, byte for byte.
    /// </summary>
    public static void UseNormalizedPath(HttpContext context, string path)
    {
        var request = context.Request;
        if (ReferenceEquals(path, request.Path.Value))
        {
            return;
        }

        request.Path = PathString.FromUriComponent(path);
        context.Features.Set(new AuthorizedPathFeature(path));
    }

    /// <summary>What the engine looks at. The port is the one the caller dialled: the original destination of a captured connection, else the app's port (what a policy's ports name).</summary>
    public static AuthorizationRequest RequestOf(HttpContext context, SidecarSnapshot snapshot, string path, RequestAuth? auth = null)
    {
        var connection = context.Connection;
        var port = context.Features.Find<OriginalDestinationFeature>()?.EndPoint.Port ?? snapshot.Sidecar.Spec.App.Port;
        var request = context.Request;
        var peer = Identity.PeerIdentity.Of(context);
        return new AuthorizationRequest(
            peer?.Principal,
            connection.RemoteIpAddress,
            request.Host.Value ?? string.Empty,
            port,
            request.Method,
            path,
            request.Headers,
            peer?.ServerName,
            auth);
    }

    /// <summary>The log line (denials, dry-run "would deny" and AUDIT matches only) and the counters.</summary>
    public static void Report(ProxyMetrics metrics, ILogger logger, HttpContext context, in AuthorizationRequest request, in AuthorizationDecision decision)
    {
        AuthorizationLog.Decision(logger, context, request, decision);
        Count(metrics, decision);
    }

    /// <summary>A TCP connection's decision (Tcp/TcpProxy.cs): logged as a connection (no method or path), counted as a request's.</summary>
    public static void ReportConnection(ProxyMetrics metrics, ILogger logger, in AuthorizationRequest request, in AuthorizationDecision decision)
    {
        AuthorizationLog.ConnectionDecision(logger, request, decision);
        Count(metrics, decision);
    }

    private static void Count(ProxyMetrics metrics, in AuthorizationDecision decision)
    {
        var enforced = decision.Enforced;
        metrics.AuthorizationDecision(decision.Allowed ? Allow : Deny, enforced.Policy?.Key ?? ProxyMetrics.NoPolicy);
        if (decision.WouldDeny && decision.DryRun is { } dry)
        {
            metrics.AuthorizationDecision(WouldDeny, dry.Policy?.Key ?? ProxyMetrics.NoPolicy);
        }

        if (decision.AuditPolicy is { } audit)
        {
            metrics.AuthorizationAudited(audit.Key);
        }
    }

    /// <summary>A 400 before evaluation: logged with what was refused, counted as "reject".</summary>
    public static void ReportRejected(ProxyMetrics metrics, ILogger logger, HttpContext context, string rejection)
    {
        metrics.AuthorizationDecision(Reject, ProxyMetrics.NoPolicy);
        AuthorizationLog.RequestRejected(logger, context.Request.Method,
            context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? string.Empty,
            Identity.PeerIdentity.Of(context)?.Principal ?? "(plaintext)", rejection);
    }
}

/// <summary>The normalized path, exactly as matched, when it differs from what the caller sent; the inbound forwarder sends this spelling.</summary>
internal sealed class AuthorizedPathFeature(string path)
{
    public string Path { get; } = path;
}
