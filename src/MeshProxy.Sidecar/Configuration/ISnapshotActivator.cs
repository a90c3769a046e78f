namespace MeshProxy.Sidecar.Configuration;

/// <summary>
/// How a configuration source puts a snapshot it built in force: its runtime state (pools, cluster state,
/// labels, transformers) is built first, carried over from the snapshot it replaces, and then it is swapped
/// in. Declared here so that the sources need not know the runtime layer above them (Runtime/RuntimeStore.cs
/// implements it).
/// </summary>
internal interface ISnapshotActivator
{
    void Activate(SidecarSnapshot snapshot);
}
