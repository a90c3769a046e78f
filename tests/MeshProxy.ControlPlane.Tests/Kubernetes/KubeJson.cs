namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>Kubernetes objects as kubectl shows them (apiVersion, kind, metadata, spec), for the fake API server.</summary>
internal static class KubeJson
{
    public static string Namespace(string name) => $$$"""
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"{{{name}}}"}}
        """;

    public static string Service(string ns, string name, int port = 80, string portName = "http", string? appProtocol = null, string clusterIp = "10.96.0.10", string? extra = null) => $$$"""
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"{{{name}}}","namespace":"{{{ns}}}","labels":{"app":"{{{name}}}"}},
         "spec":{"type":"ClusterIP","clusterIP":"{{{clusterIp}}}","clusterIPs":["{{{clusterIp}}}"],"selector":{"app":"{{{name}}}"},
                 "ports":[{"name":"{{{portName}}}","protocol":"TCP","port":{{{port}}},"targetPort":8080{{{(appProtocol is null ? "" : $",\"appProtocol\":\"{appProtocol}\"")}}} } ]{{{extra ?? ""}}} } }
        """;

    public static string Pod(string ns, string name, string ip, string serviceAccount = "default", string app = "app", string phase = "Running") => $$$"""
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"{{{name}}}","namespace":"{{{ns}}}","labels":{"app":"{{{app}}}"}},
         "spec":{"serviceAccountName":"{{{serviceAccount}}}","containers":[{"name":"app","image":"app:1"}]},
         "status":{"phase":"{{{phase}}}","podIP":"{{{ip}}}","podIPs":[{"ip":"{{{ip}}}"}]}}
        """;

    /// <summary>One EndpointSlice; each endpoint is (ip, pod name, ready, serving, terminating).</summary>
    public static string EndpointSlice(string ns, string name, string service, int port, params (string Ip, string Pod, bool Ready, bool Serving, bool Terminating)[] endpoints)
    {
        var items = string.Join(",", endpoints.Select(e => $$$"""
            {"addresses":["{{{e.Ip}}}"],"conditions":{"ready":{{{Bool(e.Ready)}}},"serving":{{{Bool(e.Serving)}}},"terminating":{{{Bool(e.Terminating)}}} },
             "targetRef":{"kind":"Pod","namespace":"{{{ns}}}","name":"{{{e.Pod}}}"}}
            """));
        return $$$"""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
             "metadata":{"name":"{{{name}}}","namespace":"{{{ns}}}","labels":{"kubernetes.io/service-name":"{{{service}}}","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},
             "addressType":"IPv4","endpoints":[{{{items}}}],"ports":[{"name":"http","protocol":"TCP","port":{{{port}}} } ] }
            """;
    }

    private static string Bool(bool value) => value ? "true" : "false";
}
