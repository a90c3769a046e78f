using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane;

/// <summary>Every log line the control plane writes, source-generated.</summary>
internal static partial class ControlPlaneLog
{
    [LoggerMessage(1, LogLevel.Information, "Configuration generation {Generation}: {Resources} resources served, {Invalid} invalid, {HeldBack} held back")]
    public static partial void ConfigLoaded(this ILogger logger, long generation, int resources, int invalid, int heldBack);

    [LoggerMessage(2, LogLevel.Error, "Invalid resource: {Error}")]
    public static partial void InvalidResource(this ILogger logger, string error);

    [LoggerMessage(3, LogLevel.Warning, "Resource warning: {Warning}")]
    public static partial void ResourceWarning(this ILogger logger, string warning);

    [LoggerMessage(4, LogLevel.Warning, "{Key} is invalid now; its last good version keeps serving")]
    public static partial void KeptLastGood(this ILogger logger, string key);

    [LoggerMessage(5, LogLevel.Warning, "Reading {Path} failed: {Error}")]
    public static partial void FileReadFailed(this ILogger logger, string path, string error);

    [LoggerMessage(6, LogLevel.Warning, "Watching the configuration directory failed ({Error}); reading it again")]
    public static partial void WatcherError(this ILogger logger, string error);

    [LoggerMessage(7, LogLevel.Information, "Sidecar {InstanceId} ({Workload}.{Namespace}) connected from {Address}")]
    public static partial void SidecarConnected(this ILogger logger, string instanceId, string workload, string @namespace, string address);

    [LoggerMessage(8, LogLevel.Information, "Sidecar {InstanceId} disconnected: {Reason}")]
    public static partial void SidecarDisconnected(this ILogger logger, string instanceId, string reason);

    [LoggerMessage(9, LogLevel.Debug, "Pushed {Version} (nonce {Nonce}, {Resources} resources) to {InstanceId}")]
    public static partial void Pushed(this ILogger logger, string version, string nonce, int resources, string instanceId);

    [LoggerMessage(10, LogLevel.Warning, "Sidecar {InstanceId} refused {Nonce} and keeps serving {Version}: {Error}")]
    public static partial void Nacked(this ILogger logger, string instanceId, string nonce, string version, string error);

    [LoggerMessage(11, LogLevel.Debug, "Sidecar {InstanceId} answered stale nonce {Nonce}; ignored")]
    public static partial void StaleNonce(this ILogger logger, string instanceId, string nonce);

    [LoggerMessage(12, LogLevel.Warning, "Push to {InstanceId} did not complete in {Seconds}s (the sidecar is not reading); closing its stream")]
    public static partial void PushTimedOut(this ILogger logger, string instanceId, double seconds);

    [LoggerMessage(14, LogLevel.Error, "{Key} version {Version} is held back, not pushed (the sidecars would refuse it), and nothing of it is served: {Errors}")]
    public static partial void HeldBack(this ILogger logger, string key, string version, string errors);

    [LoggerMessage(15, LogLevel.Error, "{Key} version {Version} is held back, not pushed (the sidecars would refuse it); its last good version {Serving} keeps serving: {Errors}")]
    public static partial void HeldBackServingLastGood(this ILogger logger, string key, string version, string serving, string errors);

    [LoggerMessage(16, LogLevel.Information, "{Key} is no longer held back")]
    public static partial void NoLongerHeldBack(this ILogger logger, string key);

    [LoggerMessage(17, LogLevel.Warning, "Sidecar {InstanceId} in {Namespace} from {Address} refused: {Reason}")]
    public static partial void SidecarRefused(this ILogger logger, string instanceId, string @namespace, string address, string reason);

    [LoggerMessage(13, LogLevel.Information, "Control plane listening: gRPC on {Grpc}, monitoring on {Monitoring}, configuration from {Directory}")]
    public static partial void Listening(this ILogger logger, string grpc, string monitoring, string directory);

    [LoggerMessage(18, LogLevel.Warning, "TLS key exchange is not limited to X25519, P-256 and P-384 ({Reason}): a client can ask for a costly finite-field group")]
    public static partial void TlsGroupsNotLimited(this ILogger logger, string reason);

    [LoggerMessage(40, LogLevel.Warning, "Config stream of {InstanceId} from {Address} refused ({Reason}); its credential: {Credential}: {Message}")]
    public static partial void StreamRefused(this ILogger logger, string instanceId, string address, string credential, string reason, string message);

    [LoggerMessage(41, LogLevel.Warning, "TLS client certificate from {Address} refused (not an SVID of this mesh): {Reason}")]
    public static partial void ClientCertificateRefused(this ILogger logger, string address, string reason);

    [LoggerMessage(42, LogLevel.Information, "Trust bundle ConfigMap {Namespace}/{Name} {Action} ({Roots} roots)")]
    public static partial void TrustBundleWritten(this ILogger logger, string @namespace, string name, string action, int roots);

    [LoggerMessage(43, LogLevel.Warning, "Trust bundle ConfigMap {Namespace}/{Name} could not be written ({Error}); retrying in {Seconds}s")]
    public static partial void TrustBundleWriteFailed(this ILogger logger, string @namespace, string name, string error, double seconds);
}
