namespace MeshProxy.ControlPlane.Resources;

/// <summary>
/// Where the served configuration comes from: the watched directory (<see cref="ResourceDirectory"/>), or the
/// Kubernetes API (<c>Kubernetes.KubernetesSource</c>). Snapshots, pushes, metrics and the CA read only this.
/// </summary>
internal interface IConfigSource
{
    /// <summary>What is served now; swapped whole, never partial.</summary>
    ConfigState Current { get; }

    /// <summary>For logs and /debug/configz: the directory's path, or the API server's address.</summary>
    string Description { get; }

    /// <summary>Raised after a change of what is served or what is wrong.</summary>
    event Action<ConfigState>? Changed;
}
