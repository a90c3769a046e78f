namespace MeshProxy.Injection;

/// <summary>The pod labels and annotations the injector reads and writes (Istio's names under our domains).</summary>
public static class Annotations
{
    /// <summary>Label or annotation, "true" or "false": overrides the namespace's choice.</summary>
    public const string Inject = "sidecar.meshproxy.io/inject";

    /// <summary>Written on injection; its presence makes injection a no-op.</summary>
    public const string Status = "sidecar.meshproxy.io/status";

    /// <summary>Written on injection: the sidecar's bootstrap resource, projected into a file by the downward API.</summary>
    public const string Bootstrap = "sidecar.meshproxy.io/bootstrap";

    public const string ProxyCpu = "sidecar.meshproxy.io/proxyCPU";
    public const string ProxyCpuLimit = "sidecar.meshproxy.io/proxyCPULimit";
    public const string ProxyMemory = "sidecar.meshproxy.io/proxyMemory";
    public const string ProxyMemoryLimit = "sidecar.meshproxy.io/proxyMemoryLimit";
    public const string GcHeapHardLimitPercent = "sidecar.meshproxy.io/gcHeapHardLimitPercent";
    public const string AppPort = "sidecar.meshproxy.io/appPort";
    public const string AppProtocol = "sidecar.meshproxy.io/appProtocol";
    public const string DrainDuration = "sidecar.meshproxy.io/drainDuration";
    public const string NativeSidecar = "sidecar.meshproxy.io/nativeSidecar";
    public const string HoldApplicationUntilProxyStarts = "sidecar.meshproxy.io/holdApplicationUntilProxyStarts";

    /// <summary>"false" keeps the app's httpGet, tcpSocket and grpc probes as they are (default: rewritten to the sidecar's /app-health).</summary>
    public const string RewriteAppHttpProbers = "sidecar.meshproxy.io/rewriteAppHTTPProbers";

    /// <summary>"true": a classic sidecar stops once the app's containers have exited (Job pods; needs restartPolicy Never).</summary>
    public const string ExitOnAppExit = "sidecar.meshproxy.io/exitOnAppExit";

    /// <summary>
    /// A fragment of the Sidecar resource's spec (YAML or JSON), merged over the injector's bootstrap by the sidecar at
    /// start-up (Istio's <c>proxy.istio.io/config</c>). The specific annotations above win over it.
    /// </summary>
    public const string ProxyConfig = "proxy.meshproxy.io/config";

    /// <summary>
    /// Ports (comma-separated numbers) that carry opaque TCP, the annotation the control plane reads on a Service: on a
    /// pod, the app port listed here is declared TCP to the sidecar (plaintext to it is then a byte stream, not HTTP).
    /// </summary>
    public const string OpaquePorts = "meshproxy.io/opaque-ports";

    public const string IncludeInboundPorts = "traffic.meshproxy.io/includeInboundPorts";
    public const string ExcludeInboundPorts = "traffic.meshproxy.io/excludeInboundPorts";
    public const string ExcludeOutboundPorts = "traffic.meshproxy.io/excludeOutboundPorts";
    public const string ExcludeOutboundIPRanges = "traffic.meshproxy.io/excludeOutboundIPRanges";
    public const string IncludeOutboundIPRanges = "traffic.meshproxy.io/includeOutboundIPRanges";

    /// <summary>The namespace label the MutatingWebhookConfiguration selects on.</summary>
    public const string NamespaceLabel = "meshproxy-injection";
}
