using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// The coordination.k8s.io/v1 Lease that decides which replica may write the CA's Secret (create the root, step a
/// rotation). Leader election as client-go does it: a Lease held by <c>holderIdentity</c> until <c>renewTime</c> +
/// <c>leaseDurationSeconds</c>; taken over only once that has passed on our clock; every write is an update carrying
/// the resourceVersion we read, so of two replicas acting on the same state one gets 409 Conflict and loses (a create
/// answered 409 AlreadyExists likewise). Holding the Lease is advisory: the Secret's own resourceVersion guards each
/// write too, so a replica that lost the Lease without knowing it cannot overwrite a newer state.
/// </summary>
internal sealed class CaLease(IKubernetes client, KubernetesCaOptions options, TimeProvider time)
{
    private DateTimeOffset _heldUntil = DateTimeOffset.MinValue;

    /// <summary>True while our last successful acquire or renew is younger than the lease duration.</summary>
    public bool Held => time.GetUtcNow() < _heldUntil;

    /// <summary>
    /// Takes or renews the Lease. True: we hold it now. False: another replica holds it (or won the race). Throws on
    /// transport errors (the caller treats them as "not held").
    /// </summary>
    public async Task<bool> TryAcquireAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        V1Lease? lease;
        try
        {
            lease = await client.CoordinationV1.ReadNamespacedLeaseAsync(options.LeaseName, options.Namespace, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.NotFound)
        {
            lease = null;
        }

        if (lease is null)
        {
            try
            {
                await client.CoordinationV1.CreateNamespacedLeaseAsync(NewLease(now, transitions: 0), options.Namespace, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.Conflict)
            {
                // AlreadyExists: another replica created it first and holds it.
                return Lost();
            }

            return Won(now);
        }

        var spec = lease.Spec ?? new V1LeaseSpec();
        var ours = spec.HolderIdentity == options.Identity;
        var expires = spec.RenewTime is { } renewed ? new DateTimeOffset(DateTime.SpecifyKind(renewed, DateTimeKind.Utc)) + TimeSpan.FromSeconds(spec.LeaseDurationSeconds ?? 0) : DateTimeOffset.MinValue;
        if (!ours && !string.IsNullOrEmpty(spec.HolderIdentity) && now < expires)
        {
            return Lost();
        }

        var next = NewLease(now, ours ? spec.LeaseTransitions ?? 0 : (spec.LeaseTransitions ?? 0) + 1);
        next.Metadata.ResourceVersion = lease.Metadata.ResourceVersion;
        if (ours && spec.AcquireTime is { } acquired)
        {
            next.Spec.AcquireTime = acquired;
        }

        try
        {
            await client.CoordinationV1.ReplaceNamespacedLeaseAsync(next, options.LeaseName, options.Namespace, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode is HttpStatusCode.Conflict or HttpStatusCode.NotFound)
        {
            // Someone else renewed or took it between our read and our write.
            return Lost();
        }

        return Won(now);
    }

    /// <summary>Forgets our hold at once (on shutdown, so that a successor need not wait for the expiry).</summary>
    public void Forget() => _heldUntil = DateTimeOffset.MinValue;

    private bool Won(DateTimeOffset now)
    {
        _heldUntil = now + options.LeaseDuration;
        return true;
    }

    private bool Lost()
    {
        _heldUntil = DateTimeOffset.MinValue;
        return false;
    }

    private V1Lease NewLease(DateTimeOffset now, int transitions) => new()
    {
        ApiVersion = "coordination.k8s.io/v1",
        Kind = "Lease",
        Metadata = new V1ObjectMeta { Name = options.LeaseName, NamespaceProperty = options.Namespace },
        Spec = new V1LeaseSpec
        {
            HolderIdentity = options.Identity,
            LeaseDurationSeconds = (int)Math.Ceiling(options.LeaseDuration.TotalSeconds),
            AcquireTime = now.UtcDateTime,
            RenewTime = now.UtcDateTime,
            LeaseTransitions = transitions,
        },
    };
}
