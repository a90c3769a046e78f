namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>Resource documents for tests.</summary>
internal static class Yaml
{
    public static string Service(string name, string ns, int port, params int[] endpointPorts) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: {{name}}, namespace: {{ns}} }
        spec:
          ports: [{ port: {{port}}, protocol: HTTP }]
          endpoints: [{{string.Join(", ", endpointPorts.Select(p => $"{{ address: 127.0.0.1, port: {p} }}"))}}]

        """;

    public static string Route(string name, string ns, string host, string destination) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: { name: {{name}}, namespace: {{ns}} }
        spec:
          hosts: [{{host}}]
          http:
            - route: [{ destination: { host: {{destination}} } }]

        """;

    public static string SidecarScope(string workload, string ns, string egressHost) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: Sidecar
        metadata: { name: {{workload}}, namespace: {{ns}} }
        spec:
          app: { port: 8080 }
          egress: [{ hosts: ["{{egressHost}}"] }]

        """;

    public static string Docs(params string[] docs) => string.Join("---\n", docs);

    /// <summary>Writes aside and renames over, as editors and ConfigMaps do, so the watcher never reads half a file.</summary>
    public static void Write(string directory, string file, string content)
    {
        var path = Path.Combine(directory, file);
        var temp = Path.Combine(directory, "." + file + ".tmp");
        File.WriteAllText(temp, content);
        File.Move(temp, path, overwrite: true);
    }
}
