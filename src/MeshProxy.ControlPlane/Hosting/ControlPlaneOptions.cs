using System.Net;

namespace MeshProxy.ControlPlane.Hosting;

public sealed record ControlPlaneOptions
{
    /// <summary>The resource directory; empty for none (allowed only with <see cref="Kubernetes"/>).</summary>
    public required string ConfigDirectory { get; init; }

    /// <summary>Discover Services, EndpointSlices and Pods from the Kubernetes API too; null: the directory alone.</summary>
    internal Kubernetes.KubernetesSourceOptions? Kubernetes { get; init; }

    /// <summary>With <see cref="Kubernetes"/>: the kubeconfig file; null: the in-cluster service account.</summary>
    public string? Kubeconfig { get; init; }

    /// <summary>With <see cref="Kubernetes"/>, for tests: the client to use instead of one made from <see cref="Kubeconfig"/>.</summary>
    internal k8s.IKubernetes? KubernetesClient { get; init; }

    /// <summary>gRPC, plaintext HTTP/2 (h2c). Istio's 15010.</summary>
    public IPEndPoint GrpcEndPoint { get; init; } = new(IPAddress.Any, 15010);

    /// <summary>/ready, /metrics, /debug/*. Istio's 15014.</summary>
    public IPEndPoint MonitoringEndPoint { get; init; } = new(IPAddress.Any, 15014);

    /// <summary>Quiet time after a file change before the directory is read again (editors write in bursts).</summary>
    public TimeSpan Debounce { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>HTTP/2 PING after this long without frames from a sidecar (Kestrel's own default is never).</summary>
    public TimeSpan KeepAlivePingDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A PING unanswered this long closes the connection: the sidecar is gone, its stream ends.</summary>
    public TimeSpan KeepAlivePingTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long one snapshot write may wait on a sidecar that does not read before its stream is closed.</summary>
    public TimeSpan PushWriteTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Largest request message accepted; a larger one fails its call with RESOURCE_EXHAUSTED, decided from the frame header.</summary>
    public int MaxReceiveMessageSize { get; init; } = 4 << 20;

    /// <summary>
    /// Largest snapshot sent; the sidecar accepts the same (its MaxReceiveMessageSize). A larger one is not sent:
    /// the push fails with RESOURCE_EXHAUSTED on this side, logged, instead of on every sidecar.
    /// </summary>
    public int MaxSendMessageSize { get; init; } = 4 << 20;

    /// <summary>
    /// The clock of the control plane's own timers: the debounce, a push's write timeout and slot wait, push
    /// latency, certificate lifetimes and the renewal of its own TLS certificate. Tests pass a fake one.
    /// Kestrel's HTTP/2 keepalive pings run on Kestrel's heartbeat, on the wall clock.
    /// </summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>
    /// With <see cref="Kubernetes"/> and <see cref="Certificates"/>: keep the injection webhook's serving certificate and
    /// caBundle from the mesh CA (Kubernetes/Webhook/WebhookCertificatePublisher); null: someone else provides them.
    /// </summary>
    internal Kubernetes.Webhook.WebhookCertificateOptions? Webhook { get; init; }

    /// <summary>The certificate authority and its CreateCertificate service; null: the control plane issues no certificates.</summary>
    public Certificates.CertificateServiceOptions? Certificates { get; init; }
}
