using System.Text;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>Writes bootstrap files for tests: a Sidecar resource plus services, all on loopback with ports chosen by the kernel.</summary>
internal sealed class MeshYaml
{
    private readonly StringBuilder _docs = new();

    /// <param name="labels">The workload's labels as a YAML flow mapping's inside ("app: billing"), for policies' selectors.</param>
    public MeshYaml(string workload, int appPort, string appProtocol = "HTTP", string drain = "1s", int outboundPort = 0, int inboundPort = 0, Identity.TlsFiles? tls = null, string? labels = null)
    {
        var labelsField = labels is null ? string.Empty : $", labels: {{ {labels} }}";
        var tlsSection = tls is null
            ? string.Empty
            : $"  tls: {{ certificateChainFile: {tls.Chain}, privateKeyFile: {tls.Key}, trustBundleFile: {tls.Bundle} }}\n";
        _docs.Append($"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: {"{"} name: {workload}, namespace: test{labelsField} {"}"}
            spec:
              workload: {"{"} serviceAccount: {workload} {"}"}
              app: {"{"} port: {appPort}, protocol: {appProtocol} {"}"}
              listeners: {"{"} outbound: {outboundPort}, inbound: {inboundPort}, admin: 0, stats: 0, inboundAddress: 127.0.0.1 {"}"}
              drainDuration: {drain}
            {tlsSection}
            """);
    }

    public MeshYaml Service(string name, int port, string protocol = "HTTP", params int[] endpointPorts)
    {
        _docs.Append($"""
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: {"{"} name: {name}, namespace: test {"}"}
            spec:
              ports: [{"{"} port: {port}, protocol: {protocol} {"}"}]
              endpoints:

            """);
        foreach (var p in endpointPorts)
        {
            _docs.Append($"    - {{ address: 127.0.0.1, port: {p} }}\n");
        }

        return this;
    }

    /// <summary>A mesh service: its endpoints run sidecars as <paramref name="serviceAccount"/>, so they are called over mTLS.</summary>
    public MeshYaml MeshService(string name, int port, string protocol, string serviceAccount, IReadOnlyList<string>? subjectAltNames, params int[] endpointPorts)
    {
        _docs.Append($"""
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: {"{"} name: {name}, namespace: test {"}"}
            spec:
              ports: [{"{"} port: {port}, protocol: {protocol} {"}"}]
              subjectAltNames: [{string.Join(", ", subjectAltNames ?? [])}]
              endpoints:

            """);
        foreach (var p in endpointPorts)
        {
            _docs.Append($"    - {{ address: 127.0.0.1, port: {p}, serviceAccount: {serviceAccount} }}\n");
        }

        return this;
    }

    /// <summary>A MeshConfig with the given inbound mTLS mode (STRICT or PERMISSIVE) and, if given, more of its spec (YAML indented by two).</summary>
    public MeshYaml Mtls(string mode, string? moreSpec = null) => Raw($"""
        apiVersion: meshproxy.io/v1alpha1
        kind: MeshConfig
        metadata: {"{"} name: mesh, namespace: meshproxy-system {"}"}
        spec:
          mtls: {"{"} mode: {mode} {"}"}
        {moreSpec}
        """);

    public MeshYaml Raw(string yaml)
    {
        _docs.Append("---\n").Append(yaml).Append('\n');
        return this;
    }

    public override string ToString() => _docs.ToString();

    public string WriteTo(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, "mesh.yaml");
        File.WriteAllText(path, ToString());
        return path;
    }
}
