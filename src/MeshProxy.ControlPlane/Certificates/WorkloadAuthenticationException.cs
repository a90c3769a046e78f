using Grpc.Core;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// An authenticator's refusal with its reasons: the gRPC status the caller gets (UNAVAILABLE when the authority that
/// checks credentials cannot answer now, so the sidecar retries; PERMISSION_DENIED when it refused the credential),
/// the metric reason, and who the credential claimed to be (for the log line; never trusted for anything else).
/// </summary>
internal sealed class WorkloadAuthenticationException(StatusCode status, string reason, string claimed, string message) : Exception(message)
{
    public StatusCode Status { get; } = status;

    /// <summary>One of <see cref="CertificateMetrics"/>' reasons.</summary>
    public string Reason { get; } = reason;

    public string Claimed { get; } = claimed;
}
