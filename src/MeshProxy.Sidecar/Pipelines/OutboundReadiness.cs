using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Pipelines;

/// <summary>How long the outbound listener holds a request the sidecar cannot forward yet.</summary>
internal sealed class OutboundReadinessOptions
{
    /// <summary>
    /// 5 s: a control plane's first push and certificate normally take well under a second, and a caller's
    /// own timeouts are rarely shorter than a few seconds, so a request made in the sidecar's first moments
    /// waits and succeeds instead of failing; one made while the control plane is away is answered
    /// 503 SNR after 5 s rather than hanging for the caller's whole timeout.
    /// </summary>
    public TimeSpan Hold { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// Whether the sidecar has what outbound forwarding needs — its first real configuration, and for mTLS
/// destinations its certificate — and a wait for it. A request arriving before is held (bounded by
/// <see cref="OutboundReadinessOptions.Hold"/>), woken by the snapshot store's and the SVID store's change
/// events rather than by polling, then forwarded or answered 503 SNR. It never reaches the resilience
/// layer meanwhile, so nothing is counted against an upstream.
/// </summary>
internal sealed class OutboundReadiness
{
    private readonly SnapshotStore _store;
    private readonly SidecarIdentity _identity;
    private readonly TimeProvider _time;
    private TaskCompletionSource _changed = NewSignal();

    public OutboundReadiness(SnapshotStore store, SidecarIdentity identity, TimeProvider time, OutboundReadinessOptions options)
    {
        _store = store;
        _identity = identity;
        _time = time;
        Hold = options.Hold;
        store.Applied += _ => Signal();
        identity.Store.Changed += (_, _) => Signal();
    }

    public TimeSpan Hold { get; }

    /// <summary>A real configuration is in force (not control-plane mode's provisional one).</summary>
    public bool HasSnapshot => _store.HasSnapshot;

    /// <summary>Outbound mTLS can be originated: an SVID is in, or this sidecar has no identity to present (plaintext only).</summary>
    public bool HasCertificate => !_identity.Enabled || _identity.Store.Current is not null;

    /// <summary>Whether a request to <paramref name="cluster"/> can be sent now as far as the certificate goes.</summary>
    public bool CanSendTo(Cluster cluster)
    {
        if (HasCertificate)
        {
            return true;
        }

        // Only endpoints that run a sidecar are called over mTLS (Forwarding/UpstreamTransport.For).
        foreach (var endpoint in cluster.Endpoints)
        {
            if (endpoint.Identity is not null)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Waits until <paramref name="ready"/> holds, at most <see cref="Hold"/> from now. True when it
    /// holds; false when the hold passed first. Throws <see cref="OperationCanceledException"/> when
    /// <paramref name="cancellationToken"/> fires (the caller went away).
    /// </summary>
    public async Task<bool> WaitAsync<TState>(Func<OutboundReadiness, TState, bool> ready, TState state, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            // The signal is taken before the check, so a change between the two still wakes the wait.
            var changed = Volatile.Read(ref _changed).Task;
            if (ready(this, state))
            {
                return true;
            }

            var left = Hold - _time.GetElapsedTime(started);
            if (left <= TimeSpan.Zero)
            {
                return false;
            }

            try
            {
                await changed.WaitAsync(left, _time, cancellationToken);
            }
            catch (TimeoutException)
            {
                return ready(this, state);
            }
        }
    }

    private void Signal() => Interlocked.Exchange(ref _changed, NewSignal()).TrySetResult();

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
