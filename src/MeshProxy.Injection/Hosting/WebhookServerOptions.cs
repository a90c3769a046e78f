using System.Net;

namespace MeshProxy.Injection.Hosting;

/// <summary>The webhook's listener. The certificate must be the one the MutatingWebhookConfiguration's caBundle signs.</summary>
public sealed record WebhookServerOptions
{
    public const int DefaultPort = 15017;
    public const string InjectPath = "/inject";
    public const string HealthPath = "/healthz";

    public IPEndPoint Listen { get; init; } = new(IPAddress.Any, DefaultPort);

    public required string CertificateFile { get; init; }

    public required string KeyFile { get; init; }

    public InjectorOptions Injector { get; init; } = new();

    /// <summary>A pod's review is rarely above a few hundred KiB; etcd refuses objects above 1.5 MiB anyway.</summary>
    public long MaxRequestBodySize { get; init; } = 3 * 1024 * 1024;
}
