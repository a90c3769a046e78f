using System.Net.Security;

namespace MeshProxy.Identity;

/// <summary>
/// The workload's current SVID and trust bundle, swapped atomically. Readers take one reference per
/// handshake; an SVID that was replaced is left to the garbage collector, never disposed here, because
/// handshakes that started with it may still be using it and established connections are unaffected anyway.
/// </summary>
public sealed class SvidStore
{
    private State? _state;

    /// <summary>Raised after every change, on the thread that made it. Handlers read <see cref="Current"/>.</summary>
    public event EventHandler? Changed;

    public X509Svid? Current => Volatile.Read(ref _state)?.Svid;

    public TrustBundle? TrustBundle => Volatile.Read(ref _state)?.Bundle;

    /// <summary>The context to present in a handshake, or null before the first SVID arrives.</summary>
    public SslStreamCertificateContext? CertificateContext => Current?.CertificateContext;

    public SpiffeId? SpiffeId => Current?.SpiffeId;

    public DateTimeOffset? NotAfter => Current?.NotAfter;

    public void Update(X509Svid svid, TrustBundle trustBundle)
    {
        ArgumentNullException.ThrowIfNull(svid);
        ArgumentNullException.ThrowIfNull(trustBundle);
        Volatile.Write(ref _state, new State(svid, trustBundle));
        Changed?.Invoke(this, EventArgs.Empty);
    }

    /// <summary>Replaces only the trust bundle (a CA rotation announced before the SVID is renewed).</summary>
    /// <exception cref="InvalidOperationException">There is no SVID yet.</exception>
    public void UpdateTrustBundle(TrustBundle trustBundle)
    {
        ArgumentNullException.ThrowIfNull(trustBundle);
        State? current, next;
        do
        {
            current = Volatile.Read(ref _state) ?? throw new InvalidOperationException("no SVID yet; use Update");
            next = current with { Bundle = trustBundle };
        }
        while (Interlocked.CompareExchange(ref _state, next, current) != current);

        Changed?.Invoke(this, EventArgs.Empty);
    }

    private sealed record State(X509Svid Svid, TrustBundle Bundle);
}
