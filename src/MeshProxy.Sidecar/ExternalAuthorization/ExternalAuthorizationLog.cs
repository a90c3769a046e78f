using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.ExternalAuthorization;

internal static partial class ExternalAuthorizationLog
{
    [LoggerMessage(EventId = 4201, EventName = "ExternalDenied", Level = LogLevel.Information,
        Message = "Denied {Method} {Path} from {Principal} with {Status}: provider {Provider} (CUSTOM policy {Policy}, rule {Rule}) said {Code} {Reason}")]
    public static partial void Denied(ILogger logger, string method, string path, string principal, int status, string provider, string policy, int rule, int code, string reason);

    [LoggerMessage(EventId = 4202, EventName = "ExternalCheckFailed", Level = LogLevel.Warning,
        Message = "{Outcome} {Method} {Path} from {Principal}: provider {Provider} (CUSTOM policy {Policy}, rule {Rule}) could not be asked: {Error}")]
    public static partial void CheckFailed(ILogger logger, string outcome, string method, string path, string principal, string provider, string policy, int rule, string error);

    [LoggerMessage(EventId = 4203, EventName = "ExternalProviderUnusable", Level = LogLevel.Warning,
        Message = "External authorization: {Problem}")]
    public static partial void ProviderUnusable(ILogger logger, string problem);

    [LoggerMessage(EventId = 4204, EventName = "ExternalDeniedConnection", Level = LogLevel.Information,
        Message = "Denied TCP connection to port {Port} from {Principal}: provider {Provider} (CUSTOM policy {Policy}, rule {Rule}) said {Code} {Reason}")]
    public static partial void DeniedConnection(ILogger logger, int port, string principal, string provider, string policy, int rule, int code, string reason);

    [LoggerMessage(EventId = 4205, EventName = "ExternalConnectionCheckFailed", Level = LogLevel.Warning,
        Message = "{Outcome} TCP connection to port {Port} from {Principal}: provider {Provider} (CUSTOM policy {Policy}, rule {Rule}) could not be asked: {Error}")]
    public static partial void ConnectionCheckFailed(ILogger logger, string outcome, int port, string principal, string provider, string policy, int rule, string error);
}
