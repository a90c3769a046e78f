using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.CustomResources;

/// <summary>Log lines of the custom-resource source (event ids 190-199, kept apart from the Kubernetes source's 100-189).</summary>
internal static partial class CustomResourceLog
{
    [LoggerMessage(190, LogLevel.Warning, "Writing the status of {Resource} {Namespace}/{Name} failed: {Error}")]
    public static partial void StatusWriteFailed(this ILogger logger, string resource, string @namespace, string name, string error);

    [LoggerMessage(191, LogLevel.Warning, "Writing the custom resources' statuses failed: {Error}")]
    public static partial void StatusPassFailed(this ILogger logger, string error);

    [LoggerMessage(192, LogLevel.Information, "{Failed} status writes failed; trying again in {Seconds:F0}s")]
    public static partial void StatusWritesRetrying(this ILogger logger, int failed, double seconds);
}
