using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.Identity;
using MeshProxy.Identity.Bootstrap;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RpcStatus = Grpc.Core.Status;

namespace MeshProxy.ControlPlane.Discovery;

/// <summary>
/// Who opens a config stream, proven (Kubernetes mode; the directory source takes the Node as it comes). Two
/// credentials, as Istio's sidecars present them: until it has an SVID the sidecar sends its pod's projected
/// service-account token as <c>authorization: Bearer</c>, reviewed by the API server like a CSR's (the same
/// <see cref="TokenReviewAuthenticator"/>), which proves namespace, service account and pod, and a pod-bound token must
/// then be presented by its pod exactly as for a CSR (the same <see cref="PodBinding"/>: same uid, not finished, from one
/// of its IPs unless <c>--token-pod-address ignore</c> or host network); once it has one, it
/// presents its SVID as the TLS client certificate on 15012, which proves namespace and service account (the pod is
/// then bound by its address, see <see cref="IWorkloadResolver"/>). A certificate wins over a token: it was checked
/// in the handshake already, and costs the API server nothing.
/// <para>
/// The certificate is checked during the TLS handshake (<see cref="CertificateCallback"/>: the chain the client sent
/// against the CA's current bundle, validity, clientAuth, one SPIFFE ID of our trust domain), because only there is
/// the client's whole chain at hand (an operator CA's intermediates). A certificate that fails fails the handshake;
/// one that passes leaves its SPIFFE ID among the connection's items for <see cref="AuthenticateAsync"/>.
/// </para>
/// Refusals: no credential UNAUTHENTICATED; a token the API server refuses PERMISSION_DENIED, TokenReview unreachable
/// UNAVAILABLE (the sidecar retries); a pod-bound token from another caller PERMISSION_DENIED <c>pod_mismatch</c>, its
/// pod not seen yet UNAVAILABLE <c>pod_unknown</c>; each logged with the peer and what the credential claimed, and counted.
/// </summary>
internal sealed class StreamAuthenticator(
    IWorkloadAuthenticator tokens, PodBinding? pods, Func<MeshCertificateAuthority?> authority, ControlPlaneMetrics metrics, PeerCertificateVerifier verifier, ILogger<StreamAuthenticator> logger)
{
    public const string MissingCredential = "missing_credential";
    public const string InvalidToken = "invalid_token";

    // The connection item that holds the SPIFFE ID a client certificate proved in the handshake.
    private static readonly object VerifiedPeerKey = new();

    /// <summary>The sidecar's proven workload; throws the RpcException to answer otherwise (already logged and counted).</summary>
    public async ValueTask<WorkloadIdentity> AuthenticateAsync(ServerCallContext context, string instanceId)
    {
        var http = context.GetHttpContext();
        var peer = $"{http.Connection.RemoteIpAddress}";
        if (http.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(VerifiedPeerKey, out var verified) == true && verified is SpiffeId id)
        {
            return new WorkloadIdentity(id.Namespace!, id.ServiceAccount!);
        }

        var token = CertificateService.BearerToken(context.RequestHeaders.GetValue("authorization"));
        if (token is null)
        {
            throw Refuse(StatusCode.Unauthenticated, MissingCredential, instanceId, peer, "unauthenticated",
                "no credential: send the pod's projected service-account token as 'authorization: Bearer <token>', or present the workload's SVID as the TLS client certificate (https://...:15012)");
        }

        WorkloadIdentity? identity;
        try
        {
            identity = await tokens.AuthenticateAsync(token, context.CancellationToken);
            if (identity is not null)
            {
                pods?.Check(identity, http.Connection.RemoteIpAddress);
            }
        }
        catch (WorkloadAuthenticationException ex)
        {
            throw Refuse(ex.Status, ex.Reason, instanceId, peer, ex.Claimed, ex.Message);
        }

        return identity ?? throw Refuse(StatusCode.Unauthenticated, InvalidToken, instanceId, peer, "unauthenticated", "the bearer token is not valid");
    }

    /// <summary>
    /// Counts, logs and makes the answer for a stream whose credential does not match the workload it claims, or
    /// that cannot be resolved to one; used by the discovery service after <see cref="AuthenticateAsync"/>.
    /// </summary>
    public RpcException Refuse(StatusCode status, string reason, string instanceId, string peer, string credential, string message)
    {
        metrics.StreamRefusals.WithLabels(reason).Inc();
        logger.StreamRefused(instanceId, peer, credential, reason, message);
        return new RpcException(new RpcStatus(status, message));
    }

    /// <summary>
    /// The TLS listener's check of an optional client certificate, per connection (<see cref="ControlPlaneTlsIdentity.ClientCertificates"/>):
    /// none is fine (the token is checked per stream); one must be an SVID of this mesh, and its SPIFFE ID is kept
    /// with the connection. The platform's own verdict (system roots) is ignored: only the mesh's bundle counts.
    /// </summary>
    public RemoteCertificateValidationCallback CertificateCallback(ConnectionContext connection) => (_, certificate, chain, _) =>
    {
        if (certificate is null)
        {
            return true;
        }

        var ca = authority()?.Current;
        if (ca is null)
        {
            return false;
        }

        var presented = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var result = verifier.Verify(presented, chain?.ChainPolicy.ExtraStore, ca.Bundle, ca.Mesh.TrustDomain, PeerRole.Client);
        if (!result.IsValid || result.SpiffeId is not { IsWorkload: true } id)
        {
            metrics.StreamRefusals.WithLabels("bad_client_certificate").Inc();
            logger.ClientCertificateRefused($"{connection.RemoteEndPoint}", result.ToString());
            return false;
        }

        connection.Items[VerifiedPeerKey] = id;
        return true;
    };
}
