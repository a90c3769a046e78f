using k8s;

namespace MeshProxy.Cli;

/// <summary>The Kubernetes client the commands that read a cluster (check, proxy-status) use, from --kubeconfig or kubectl's defaults.</summary>
internal static class KubeconfigClient
{
    /// <summary>The client, or null after writing why there is none to <paramref name="error"/> as "<paramref name="command"/>: ...".</summary>
    public static IKubernetes? TryCreate(string? kubeconfig, string command, TextWriter error)
    {
        try
        {
            return new Kubernetes(kubeconfig is null ? KubernetesClientConfiguration.BuildDefaultConfig() : KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
        }
        catch (Exception ex) when (ex is k8s.Exceptions.KubeConfigException or IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"{command}: no Kubernetes API to ask: {ex.Message}");
            return null;
        }
    }
}
