using System.Security.Authentication;
using MeshProxy.Identity;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The server of an outbound mTLS connection is not one the destination may be (thrown by Forwarding/UpstreamTls.cs);
/// the request fails with flag UPI. Declared with the failure classification (<see cref="UpstreamFailure"/>) that reads it.
/// </summary>
internal sealed class UpstreamPeerRefusedException(string endpoint, PeerVerificationResult verdict)
    : AuthenticationException($"server {endpoint} refused: {verdict}")
{
    public PeerVerificationResult Verdict { get; } = verdict;
}
