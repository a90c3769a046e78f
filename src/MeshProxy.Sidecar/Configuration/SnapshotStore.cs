using System.Diagnostics.CodeAnalysis;
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

    /// <summary>The last configuration refused since a snapshot was last applied; null once a later one is.</summary>
    public ConfigRejection? LastRejection => _lastRejection;

    /// <summary>Raised after a new snapshot is in force (not on the request path).</summary>
    public event Action<SidecarSnapshot>? Applied;

    public bool TryGetCurrent([NotNullWhen(true)] out SidecarSnapshot? snapshot)
    {
        snapshot = _current;
        return snapshot is not null;
    }

    /// <summary>
    /// Swaps <paramref name="snapshot"/> in. Only the runtime store calls this (Runtime/RuntimeStore.cs, through
    /// <see cref="ISnapshotActivator"/>), once the snapshot's runtime state is built: sources go through the activator.
    /// </summary>
    public void Apply(SidecarSnapshot snapshot)
    {
        _current = snapshot;
        // The error described what was refused instead of the snapshot then in force; a snapshot accepted
        // since makes it history, which the rejection counters and the log keep.
        _lastRejection = null;
        Applied?.Invoke(snapshot);
    }

    /// <summary>Raised after a configuration is refused (not on the request path).</summary>
    public event Action<ConfigRejection>? Rejected;

    public void Reject(ConfigRejection rejection)
    {
        _lastRejection = rejection;
        Rejected?.Invoke(rejection);
    }
}
