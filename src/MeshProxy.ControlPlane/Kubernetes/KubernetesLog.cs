using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes;

/// <summary>Every log line of the Kubernetes source, source-generated (event ids 100-199).</summary>
internal static partial class KubernetesLog
{
    [LoggerMessage(100, LogLevel.Information, "Listed {Resource}: {Count} objects at resourceVersion {ResourceVersion}")]
    public static partial void Listed(this ILogger logger, string resource, int count, string resourceVersion);

    [LoggerMessage(101, LogLevel.Information, "Watch of {Resource} from resourceVersion {ResourceVersion} is too old (410 Gone); listing again")]
    public static partial void WatchExpired(this ILogger logger, string resource, string resourceVersion);

    [LoggerMessage(102, LogLevel.Information, "List of {Resource}: the continue token expired (410); starting the list over")]
    public static partial void ContinueExpired(this ILogger logger, string resource);

    [LoggerMessage(103, LogLevel.Warning, "Kubernetes API server unreachable for {Resource} ({Error}); serving the last known state, retrying in {Seconds:F1}s")]
    public static partial void ApiServerUnreachable(this ILogger logger, string resource, string error, double seconds);

    [LoggerMessage(104, LogLevel.Information, "Kubernetes API server reachable again for {Resource} after {Seconds:F1}s")]
    public static partial void ApiServerBack(this ILogger logger, string resource, double seconds);

    [LoggerMessage(105, LogLevel.Warning, "Skipped a malformed {Resource} object: {Error}")]
    public static partial void MalformedObject(this ILogger logger, string resource, string error);

    [LoggerMessage(106, LogLevel.Warning, "Watch of {Resource} reported an error: {Error}")]
    public static partial void WatchError(this ILogger logger, string resource, string error);

    [LoggerMessage(107, LogLevel.Information, "{Resource} is not served by the API server (404: its CRD is not installed); read as empty, listing again in {Seconds:F1}s and with backoff")]
    public static partial void KindNotServed(this ILogger logger, string resource, double seconds);

    [LoggerMessage(110, LogLevel.Information, "Kubernetes configuration generation {Generation}: {Services} Services discovered, {Resources} resources served, {HeldBack} held back; built in {Milliseconds:F0} ms")]
    public static partial void KubernetesStateBuilt(this ILogger logger, long generation, int services, int resources, int heldBack, double milliseconds);

    [LoggerMessage(111, LogLevel.Warning, "{Origin} is skipped: {Reason} (its last good translation keeps serving: {KeptLastGood})")]
    public static partial void ServiceSkipped(this ILogger logger, string origin, string reason, bool keptLastGood);
}
