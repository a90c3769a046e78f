using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>
/// Auto mTLS's choice per endpoint (Configuration/SnapshotBuilder.cs): a sidecar endpoint keeps its identity (and
/// so is called over mTLS) unless the PeerAuthentication in effect for it, by the Service's namespace, the
/// endpoint's labels and the port it listens on, is DISABLE. Over real sockets: ControlPlane.Tests' AutoMtlsTests.
/// </summary>
public sealed class AutoMtlsEndpointTests
{
    private const string Billing = """
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: billing, namespace: test }
        spec:
          ports: [{ port: 80, protocol: HTTP }]
          endpoints:
          - { address: 10.0.0.1, port: 9001, serviceAccount: billing, labels: { app: billing } }
          - { address: 10.0.0.2, port: 9002, serviceAccount: billing, labels: { app: billing } }
          - { address: 10.0.0.3, port: 9001, serviceAccount: billing, labels: { app: billing-canary } }
          - { address: 10.0.0.4, port: 9001 }
        """;

    [Theory]
    // Workload scope with a DISABLE port: only the selected endpoints on that port are plaintext.
    [InlineData("selector: { matchLabels: { app: billing } }\n  mtls: { mode: STRICT }\n  portLevelMtls: { 9001: { mode: DISABLE } }", "10.0.0.2:9002 10.0.0.3:9001")]
    // A PERMISSIVE port and a STRICT workload: mTLS everywhere.
    [InlineData("selector: { matchLabels: { app: billing } }\n  mtls: { mode: STRICT }\n  portLevelMtls: { 9001: { mode: PERMISSIVE } }", "10.0.0.1:9001 10.0.0.2:9002 10.0.0.3:9001")]
    // Namespace-wide DISABLE: every sidecar endpoint of the namespace is plaintext.
    [InlineData("mtls: { mode: DISABLE }", "")]
    // Workload DISABLE with a STRICT port back: only that port keeps mTLS.
    [InlineData("selector: { matchLabels: { app: billing } }\n  mtls: { mode: DISABLE }\n  portLevelMtls: { 9002: { mode: STRICT } }", "10.0.0.2:9002 10.0.0.3:9001")]
    public void Endpoints_on_a_disable_port_lose_their_identity_and_the_others_keep_it(string spec, string mtlsEndpoints)
    {
        var yaml = new MeshYaml("store", 1).Raw(Billing).Raw($"""
            apiVersion: meshproxy.io/v1alpha1
            kind: PeerAuthentication
            metadata: {"{"} name: billing, namespace: test {"}"}
            spec:
              {spec}
            """);
        var snapshot = SnapshotBuilder.Build(ResourceParser.ParseText(yaml.ToString(), "auto.yaml"), "v1", "auto.yaml", DateTimeOffset.UnixEpoch);
        Assert.True(snapshot.Services.TryResolve("billing", 80, out var billing));
        var endpoints = billing!.DefaultCluster.Endpoints;
        Assert.Equal(mtlsEndpoints, string.Join(' ', endpoints.Where(e => e.Identity is not null).Select(e => e.Key)));
        Assert.Null(endpoints.Single(e => e.Address == "10.0.0.4").Identity);
    }
}
