namespace MeshProxy.Identity.Bootstrap;

/// <summary>The workload a bootstrap credential belongs to; the CA turns it into the SPIFFE ID it may sign for.</summary>
public sealed record WorkloadIdentity(string Namespace, string ServiceAccount)
{
    /// <summary>
    /// The pod the credential is bound to, when the authenticator proved one (a Kubernetes token bound to its pod);
    /// named in log lines. The SPIFFE ID does not carry it: every replica of a workload shares one identity.
    /// </summary>
    public string? Pod { get; init; }

    /// <summary>The uid of <see cref="Pod"/> as the authenticator proved it (a pod of the same name created later has another).</summary>
    public string? PodUid { get; init; }

    public SpiffeId ToSpiffeId(string trustDomain) => SpiffeId.ForWorkload(trustDomain, Namespace, ServiceAccount);

    public override string ToString() => Pod is null ? $"{Namespace}/{ServiceAccount}" : $"{Namespace}/{ServiceAccount} (pod {Namespace}/{Pod})";
}

/// <summary>
/// Proves who is asking for a certificate before the CA signs anything. Locally a per-workload token
/// (<see cref="LocalTokenStore"/>); in a cluster a Kubernetes ServiceAccount token checked by TokenReview.
/// </summary>
public interface IWorkloadAuthenticator
{
    /// <summary>The workload holding <paramref name="bearerToken"/>, or null when the token proves nothing.</summary>
    ValueTask<WorkloadIdentity?> AuthenticateAsync(string bearerToken, CancellationToken cancellationToken);
}
