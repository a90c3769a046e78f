using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.CustomResources;

/// <summary>Log lines of the custom-resource source (event ids 190-199, kept apart from the Kubernetes source's 100-189).</summary>
internal static partial class CustomResourceLog
{
    [LoggerMessage(190, LogLevel.Warning, "Writing the status of {Resource} {Namespace}/{Name} failed: {Error}")]
    public static partial void StatusWriteFailed(this ILogger logger, string resource, string @namespace, string name, string error);
}
