using MeshProxy.Identity;

namespace MeshProxy.Sidecar.Identity;

/// <summary>
/// The workload's identity as the listeners and the forwarder see it: one <see cref="SvidStore"/> that a
/// source fills (the files of <c>spec.tls</c>, or the control plane's CA), and whether an identity is
/// configured at all. "Configured" is decided before the listeners start and never changes: a sidecar that
/// is waiting for its first SVID refuses mesh traffic rather than falling back to plaintext.
/// </summary>
internal sealed class SidecarIdentity
{
    private volatile bool _enabled;

    public SvidStore Store { get; } = new();

    public TlsCounters Counters { get; } = new();

    /// <summary>True when a source will supply an SVID: inbound speaks TLS and outbound originates mTLS to mesh endpoints.</summary>
    public bool Enabled => _enabled;

    /// <summary>Called by an identity source at start-up, before the listeners start.</summary>
    public void Enable() => _enabled = true;
}
