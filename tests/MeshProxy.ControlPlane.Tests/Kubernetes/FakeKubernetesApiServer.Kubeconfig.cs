namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>TEST INFRASTRUCTURE: a kubeconfig naming this server, for a real process (the control plane) to be pointed at it.</summary>
internal sealed partial class FakeKubernetesApiServer
{
    /// <summary>Writes a kubeconfig for this server (a bearer token the fake accepts) to <paramref name="path"/> and returns the path.</summary>
    public string WriteKubeconfig(string path)
    {
        File.WriteAllText(path, $$"""
            apiVersion: v1
            kind: Config
            clusters: [{ name: fake, cluster: { server: "{{BaseUri.ToString().TrimEnd('/')}}" } }]
            users: [{ name: controlplane, user: { token: control-plane-token } }]
            contexts: [{ name: fake, context: { cluster: fake, user: controlplane } }]
            current-context: fake
            """);
        return path;
    }
}
