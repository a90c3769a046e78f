using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.Webhook;

/// <summary>Log lines of the webhook certificate publisher (event ids 170-179, inside the Kubernetes source's 100-199).</summary>
internal static partial class WebhookLog
{
    [LoggerMessage(170, LogLevel.Information, "Published the injector's serving certificate in secret {Namespace}/{Secret} for {DnsNames} ({Reason})")]
    public static partial void WebhookCertificatePublished(this ILogger logger, string @namespace, string secret, string dnsNames, string reason);

    [LoggerMessage(171, LogLevel.Information, "Set the caBundle of {Webhooks} webhook(s) in mutatingwebhookconfiguration {Configuration} to the mesh trust bundle")]
    public static partial void WebhookBundlePublished(this ILogger logger, string configuration, int webhooks);

    [LoggerMessage(172, LogLevel.Warning, "Mutatingwebhookconfiguration {Configuration} does not exist (not applied yet?); looking again in {Seconds:F0}s")]
    public static partial void WebhookConfigurationMissing(this ILogger logger, string configuration, double seconds);

    [LoggerMessage(173, LogLevel.Information, "Another replica wrote {Target} first (409); reading it again")]
    public static partial void WebhookWriteRaced(this ILogger logger, string target);

    [LoggerMessage(174, LogLevel.Warning, "Cannot publish the webhook's certificate (secret {Secret}, configuration {Configuration}): {Error}; retrying in {Seconds:F0}s")]
    public static partial void WebhookPublishFailed(this ILogger logger, string secret, string configuration, string error, double seconds);
}
