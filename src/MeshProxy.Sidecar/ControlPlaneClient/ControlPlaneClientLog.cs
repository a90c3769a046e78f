using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.ControlPlaneClient;

internal static partial class ControlPlaneClientLog
{
    [LoggerMessage(101, LogLevel.Information, "Connecting to the control plane at {Address} as {InstanceId}")]
    public static partial void Connecting(this ILogger logger, string address, string instanceId);

    [LoggerMessage(102, LogLevel.Warning, "Control plane at {Address} unavailable ({Error}); serving {Version}, retrying in {DelayMs} ms")]
    public static partial void StreamFailed(this ILogger logger, string address, string error, string version, long delayMs);

    [LoggerMessage(103, LogLevel.Information, "Snapshot {Version} (nonce {Nonce}, {Resources} resources) applied and acknowledged")]
    public static partial void SnapshotAcked(this ILogger logger, string version, string nonce, int resources);

    [LoggerMessage(104, LogLevel.Error, "Snapshot {Version} (nonce {Nonce}) refused, {Current} keeps serving: {Error}")]
    public static partial void SnapshotNacked(this ILogger logger, string version, string nonce, string current, string error);

    [LoggerMessage(105, LogLevel.Warning, "Serving saved snapshot {Version} from {Path} (stale: the control plane has not confirmed it since the restart)")]
    public static partial void ServingSaved(this ILogger logger, string version, string path);

    [LoggerMessage(106, LogLevel.Warning, "Saved snapshot {Path} is unusable ({Error}); waiting for the control plane")]
    public static partial void SavedUnusable(this ILogger logger, string path, string error);

    [LoggerMessage(107, LogLevel.Warning, "Saving the snapshot to {Path} failed: {Error}")]
    public static partial void SaveFailed(this ILogger logger, string path, string error);

    [LoggerMessage(108, LogLevel.Information, "No snapshot yet: listeners open, not ready until the control plane at {Address} answers")]
    public static partial void WaitingForFirstSnapshot(this ILogger logger, string address);

    [LoggerMessage(109, LogLevel.Warning, "Snapshot resource warning: {Warning}")]
    public static partial void SnapshotWarning(this ILogger logger, string warning);

    [LoggerMessage(110, LogLevel.Error, "Refused the control plane at {Address}: {Reason}: {Detail} (trusting only {CaFile}); the configuration in force keeps serving")]
    public static partial void ControlPlaneRefused(this ILogger logger, string address, string reason, string detail, string caFile);

    [LoggerMessage(111, LogLevel.Error, "Refused the control plane at {Address}: controlPlane.caFile {CaFile} is unusable ({Error}); the configuration in force keeps serving")]
    public static partial void CaFileUnusable(this ILogger logger, string address, string caFile, string error);
}
