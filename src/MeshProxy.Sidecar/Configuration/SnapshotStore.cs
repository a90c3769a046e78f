using MeshProxy.Config.Parsing;

namespace MeshProxy.Sidecar.Configuration;

/// <summary>A configuration that was refused, and why; the previous snapshot kept serving.</summary>
internal sealed record ConfigRejection(string Version, DateTimeOffset At, IReadOnlyList<ConfigDiagnostic> Errors)
{
    public string Message => string.Join("; ", Errors);
}

/// <summary>
/// Holds the snapshot in force. Swapping is a single reference write, so readers never see a torn
/// snapshot and never take a lock.
/// </summary>
internal sealed class SnapshotStore
{
    private volatile SidecarSnapshot? _current;
    private volatile ConfigRejection? _lastRejection;

    public SidecarSnapshot Current => _current ?? throw new InvalidOperationException("No configuration has been loaded yet.");

    /// <summary>True once a real configuration is in force (not the provisional one of control-plane mode).</summary>
    public bool HasSnapshot => _current is { Provisional: false };

    public ConfigRejection? LastRejection => _lastRejection;

    /// <summary>Raised after a new snapshot is in force (not on the request path).</summary>
    public event Action<SidecarSnapshot>? Applied;

    public void Apply(SidecarSnapshot snapshot)
    {
        _current = snapshot;
        Applied?.Invoke(snapshot);
    }

    public void Reject(ConfigRejection rejection) => _lastRejection = rejection;
}
