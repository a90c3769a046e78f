namespace MeshProxy.Config.Resources;

/// <summary>
/// The environment contract between the injector, which writes these variables into the sidecar container,
/// and the sidecar, which reads them: defined once here so that the two sides cannot drift apart. What the
/// variables describe is the pod (its app's probes, whether to follow the app out, the pod's own override of
/// its Sidecar spec), not the mesh. Also the one name the control plane, the injector and the sidecar share for
/// the trust bundle: the ConfigMap the control plane writes, the injector mounts and the sidecar reads as caFile.
/// </summary>
public static class SidecarEnvironment
{
    /// <summary>The bootstrap file (the sidecar's --config when none is passed).</summary>
    public const string Config = "MESHPROXY_CONFIG";

    /// <summary>The workload's name, for the bootstrap the pod's startup writes.</summary>
    public const string Workload = "MESHPROXY_WORKLOAD";

    /// <summary>The workload's namespace, for the bootstrap the pod's startup writes.</summary>
    public const string Namespace = "MESHPROXY_NAMESPACE";

    /// <summary>The control plane's address, for the bootstrap the pod's startup writes.</summary>
    public const string ControlPlane = "MESHPROXY_CONTROL_PLANE";

    /// <summary>
    /// The app's rewritten kubelet probes: a JSON object from each <see cref="AppHealthPathPrefix"/> path the
    /// kubelet now asks the sidecar for to the original probe (httpGet, tcpSocket or grpc, ports as numbers).
    /// </summary>
    public const string AppProbers = "MESHPROXY_APP_PROBERS";

    /// <summary>"true": the sidecar exits once the app's processes have (classic sidecars in Jobs).</summary>
    public const string ExitOnAppExit = "MESHPROXY_EXIT_ON_APP_EXIT";

    /// <summary>The pod's proxy.meshproxy.io/config fragment, merged over the bootstrap's Sidecar spec.</summary>
    public const string ProxyConfig = "MESHPROXY_PROXY_CONFIG";

    /// <summary>
    /// The ConfigMap holding the mesh's trust bundle (every root, PEM) that the control plane keeps in every meshed
    /// namespace and the injector mounts into the sidecar: the sidecar's <c>controlPlane.caFile</c>, which alone
    /// vouches for the control plane on <c>https://...:15012</c>. Istio's <c>istio-ca-root-cert</c>.
    /// </summary>
    public const string TrustBundleConfigMap = "meshproxy-ca-root-cert";

    /// <summary>The key of the bundle in <see cref="TrustBundleConfigMap"/>, and its file name where it is mounted.</summary>
    public const string TrustBundleKey = "root-cert.pem";

    /// <summary>Where the injector mounts <see cref="TrustBundleConfigMap"/> in the sidecar.</summary>
    public const string TrustBundleDirectory = "/var/run/secrets/meshproxy/ca";

    /// <summary>The sidecar's <c>controlPlane.caFile</c> on Kubernetes.</summary>
    public const string TrustBundleFile = TrustBundleDirectory + "/" + TrustBundleKey;

    /// <summary>Where on the stats port the rewritten probes point: <c>/app-health/&lt;container&gt;/livez|readyz|startupz</c>.</summary>
    public const string AppHealthPathPrefix = "/app-health/";

    /// <summary>The path of one rewritten probe; <paramref name="kind"/> is livez, readyz or startupz.</summary>
    public static string AppHealthPath(string container, string kind) => $"{AppHealthPathPrefix}{container}/{kind}";
}
