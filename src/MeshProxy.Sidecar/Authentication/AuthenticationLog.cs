using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Authentication;

internal static partial class AuthenticationLog
{
    [LoggerMessage(EventId = 4101, EventName = "TokenRefused", Level = LogLevel.Information,
        Message = "Refused {Method} {Path} from {Principal} with 401: JWT {Reason} (issuer {Issuer})")]
    public static partial void TokenRefused(ILogger logger, string method, string path, string principal, string reason, string issuer);

    [LoggerMessage(EventId = 4102, EventName = "JwksFetched", Level = LogLevel.Information,
        Message = "JWKS {Uri}: fetched, {Count} keys")]
    public static partial void JwksFetched(ILogger logger, string uri, int count);

    [LoggerMessage(EventId = 4103, EventName = "JwksFetchFailed", Level = LogLevel.Warning,
        Message = "JWKS {Uri}: fetch failed ({Reason}); {Kept}")]
    public static partial void JwksFetchFailed(ILogger logger, string uri, string reason, string kept);

    [LoggerMessage(EventId = 4104, EventName = "JwksKeysSkipped", Level = LogLevel.Warning,
        Message = "JWKS {Uri}: keys left out: {Skipped}")]
    public static partial void JwksKeysSkipped(ILogger logger, string uri, string skipped);

    [LoggerMessage(EventId = 4105, EventName = "RequestAuthenticationCompiled", Level = LogLevel.Information,
        Message = "Request authentication: {Resources} apply to this workload (issuers {Issuers})")]
    public static partial void Compiled(ILogger logger, string resources, string issuers);
}
