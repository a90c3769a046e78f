using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Forwarding;

namespace MeshProxy.Sidecar.Runtime;

/// <summary>
/// Puts snapshots in force (<see cref="ISnapshotActivator"/>, called by the configuration sources): builds each
/// one's runtime from the one in force (<see cref="RuntimeBuilder"/>), makes it <see cref="Current"/>, then swaps
/// the configuration into the <see cref="SnapshotStore"/>, whose readers (admin, identity, metrics) need no
/// runtime state. Swapping is a single reference write: requests read <see cref="Current"/> once, at their start.
/// </summary>
internal sealed class RuntimeStore(SnapshotStore snapshots, IClusterPools pools) : ISnapshotActivator, IDisposable
{
    private readonly Lock _lock = new();
    private volatile RuntimeSnapshot? _current;
    private bool _disposed;

    public RuntimeSnapshot Current => _current ?? throw new InvalidOperationException("No configuration has been loaded yet.");

    public void Activate(SidecarSnapshot snapshot)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return; // shutting down: a late reload has nothing left to serve
            }

            _current = RuntimeBuilder.Build(snapshot, _current, pools);
            snapshots.Apply(snapshot);
        }
    }

    /// <summary>Retires the pools in use: they close once the requests still in them are done.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (var pool in _current?.Pools.Values ?? [])
            {
                pool.Retire();
            }
        }
    }
}
