using System.Collections.Concurrent;

namespace MeshProxy.ControlPlane.Discovery;

/// <summary>Every sidecar connected right now, keyed by stream (a reconnecting sidecar may overlap its old stream briefly).</summary>
internal sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<SidecarConnection, byte> _connections = new(ReferenceEqualityComparer.Instance);

    public int Count => _connections.Count;

    public IEnumerable<SidecarConnection> All => _connections.Keys;

    public void Add(SidecarConnection connection) => _connections.TryAdd(connection, 0);

    public void Remove(SidecarConnection connection) => _connections.TryRemove(connection, out _);

    /// <summary>Asks every stream to check whether its workload's snapshot changed; only those that did push.</summary>
    public void WakeAll()
    {
        foreach (var connection in _connections.Keys)
        {
            connection.Wake();
        }
    }
}
