namespace MeshProxy.Sidecar.Configuration;

/// <summary>Where snapshots come from after start-up: the bootstrap file (standalone) or the control plane.</summary>
internal interface IConfigSource
{
    /// <summary>Starts following changes; called once the listeners are up.</summary>
    void StartWatching();
}
