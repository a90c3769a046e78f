using System.Net;
using MeshProxy.Grpc.Server;

namespace MeshProxy.ControlPlane.Hosting;

public sealed record ControlPlaneOptions
{
    public required string ConfigDirectory { get; init; }

    /// <summary>gRPC, plaintext HTTP/2 (h2c). Istio's 15010.</summary>
    public IPEndPoint GrpcEndPoint { get; init; } = new(IPAddress.Any, 15010);

    /// <summary>/ready, /metrics, /debug/*. Istio's 15014.</summary>
    public IPEndPoint MonitoringEndPoint { get; init; } = new(IPAddress.Any, 15014);

    /// <summary>Quiet time after a file change before the directory is read again (editors write in bursts).</summary>
    public TimeSpan Debounce { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan KeepAlivePingDelay { get; init; } = GrpcKestrelExtensions.DefaultKeepAlivePingDelay;

    public TimeSpan KeepAlivePingTimeout { get; init; } = GrpcKestrelExtensions.DefaultKeepAlivePingTimeout;

    /// <summary>How long one snapshot write may wait on a sidecar that does not read before its stream is closed.</summary>
    public TimeSpan PushWriteTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public int MaxReceiveMessageSize { get; init; } = 4 << 20;

    /// <summary>The certificate authority and its CreateCertificate service; null: the control plane issues no certificates.</summary>
    public Certificates.CertificateServiceOptions? Certificates { get; init; }
}
