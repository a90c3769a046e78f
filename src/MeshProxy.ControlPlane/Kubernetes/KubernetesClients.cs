using k8s;

namespace MeshProxy.ControlPlane.Kubernetes;

/// <summary>Where the Kubernetes API is: a kubeconfig file when one is named, else the pod's in-cluster service account.</summary>
internal static class KubernetesClients
{
    /// <summary>Throws <see cref="k8s.Exceptions.KubeConfigException"/> when neither works (no file, not in a cluster).</summary>
    public static IKubernetes Create(string? kubeconfig)
    {
        var config = kubeconfig is not null
            ? KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig)
            : KubernetesClientConfiguration.IsInCluster()
                ? KubernetesClientConfiguration.InClusterConfig()
                : throw new k8s.Exceptions.KubeConfigException(
                    "not running in a cluster (no KUBERNETES_SERVICE_HOST, no service account token): pass --kubeconfig <file>");
        return new k8s.Kubernetes(config);
    }
}
