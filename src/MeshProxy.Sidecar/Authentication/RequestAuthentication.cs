using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Authentication;

/// <summary>The inbound pipeline's authentication step around <see cref="RequestAuthenticator"/>: the 401, its log line and the counter.</summary>
internal static class RequestAuthentication
{
    /// <summary>RFC 6750's challenge for a refused bearer token; it names no issuer, key or reason beyond the error code.</summary>
    public const string Challenge = "Bearer realm=\"meshproxy\", error=\"invalid_token\"";

    /// <summary>The result label of meshproxy_request_authentication_total for a request without a token.</summary>
    public const string NoToken = "no_token";

    public const string Valid = "valid";

    /// <summary>Metric label and 401 body of each failure (snake_case; the body is "Jwt " + a short sentence).</summary>
    public static string Label(JwtFailure failure) => failure switch
    {
        JwtFailure.Malformed => "malformed",
        JwtFailure.UnsupportedAlgorithm => "unsupported_algorithm",
        JwtFailure.UnknownIssuer => "unknown_issuer",
        JwtFailure.UnknownKey => "unknown_key",
        JwtFailure.KeysUnavailable => "keys_unavailable",
        JwtFailure.BadSignature => "bad_signature",
        JwtFailure.Expired => "expired",
        JwtFailure.NotYetValid => "not_yet_valid",
        JwtFailure.AudienceNotAllowed => "audience_not_allowed",
        JwtFailure.MultipleTokens => "multiple_tokens",
        _ => Valid,
    };

    private static string Body(JwtFailure failure) => failure switch
    {
        JwtFailure.Malformed => "Jwt is malformed",
        JwtFailure.UnsupportedAlgorithm => "Jwt algorithm is not accepted",
        JwtFailure.UnknownIssuer => "Jwt issuer is not configured",
        JwtFailure.UnknownKey => "Jwt key is not in the issuer's key set",
        JwtFailure.KeysUnavailable => "Jwt issuer's keys are not available",
        JwtFailure.BadSignature => "Jwt verification fails",
        JwtFailure.Expired => "Jwt is expired",
        JwtFailure.NotYetValid => "Jwt is not yet valid",
        JwtFailure.AudienceNotAllowed => "Jwt audience is not allowed",
        _ => "Jwt: more than one token in the request",
    };

    /// <summary>Logs (event 4101), counts and answers 401 with the challenge.</summary>
    public static Task RefuseAsync(HttpContext context, ProxyMetrics metrics, ILogger logger, in AuthenticationResult result, string path, string? principal)
    {
        var label = Label(result.Failure);
        metrics.RequestAuthenticated(label);
        AuthenticationLog.TokenRefused(logger, context.Request.Method, path, principal ?? "(plaintext)", label, result.Issuer ?? "-");

        // LocalReply clears the response's headers; the challenge is added as it starts.
        context.Response.OnStarting(static state =>
        {
            ((HttpResponse)state).Headers.WWWAuthenticate = Challenge;
            return Task.CompletedTask;
        }, context.Response);
        return LocalReply.WriteAsync(context, StatusCodes.Status401Unauthorized, ResponseFlags.None, Body(result.Failure));
    }
}
