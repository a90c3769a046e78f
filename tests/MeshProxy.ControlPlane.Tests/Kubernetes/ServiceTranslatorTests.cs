using k8s;
using k8s.Models;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Kubernetes.Discovery;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// Service + EndpointSlices + Pods -> the mesh Service, table-driven; every output is parsed with the sidecar's own
/// parser, so what is checked is what a sidecar would build.
/// </summary>
public sealed class ServiceTranslatorTests
{
    [Theory]
    [InlineData("http", null, "Http")]
    [InlineData("web", "http", "Http")]
    [InlineData("web", "kubernetes.io/h2c", "Http2")]
    [InlineData("rpc", "grpc", "Grpc")]
    [InlineData("db", "tcp", "Tcp")]
    [InlineData("secure", "https", "Https")]
    [InlineData("http-api", null, "Http")]
    [InlineData("grpc-orders", null, "Grpc")]
    [InlineData("http2-x", null, "Http2")]
    [InlineData("tcp-db", null, "Tcp")]
    [InlineData("tls-x", null, "Tls")]
    [InlineData("mysql", null, "Tcp")]
    [InlineData("grpc-looking", "http", "Http")] // appProtocol wins over the name
    [InlineData("metrics", null, "Http")] // neither: left unset, the sidecar's default (it does not sniff)
    public void PortProtocolComesFromAppProtocolElseThePortNamePrefix(string portName, string? appProtocol, string expected)
    {
        var service = Translate(KubeJson.Service("shop", "api", portName: portName, appProtocol: appProtocol), []);
        Assert.Equal(Enum.Parse<AppProtocol>(expected), service.Spec.Ports.Single().Protocol);
    }

    [Theory]
    [InlineData(5432, "Tcp")] // listed: TCP although the port is named http
    [InlineData(80, "Http")]  // not listed: its name decides
    public void PortsListedInTheOpaquePortsAnnotationAreTcp(int port, string expected)
    {
        var json = KubeJson.Service("shop", "db", port: port, portName: "http")
            .Replace("\"labels\":{", "\"annotations\":{\"meshproxy.io/opaque-ports\":\"x, 5432,\"},\"labels\":{", StringComparison.Ordinal);
        var service = Translate(json, []);
        Assert.Equal(Enum.Parse<AppProtocol>(expected), service.Spec.Ports.Single().Protocol);
    }

    [Fact]
    public void HostsAddressesAndPortsOfAClusterIpService()
    {
        var service = Translate(KubeJson.Service("shop", "api", port: 80, clusterIp: "10.96.3.4"), [], clusterDomain: "corp.example");
        Assert.Equal(["api", "api.shop", "api.shop.svc.corp.example"], service.Spec.Hosts);
        Assert.Equal(["10.96.3.4"], service.Spec.Addresses);
        var port = service.Spec.Ports.Single();
        Assert.Equal((80, 8080, "http"), (port.Port, port.TargetPort, port.Name));
        Assert.Equal("api", service.Metadata.Name);
        Assert.Equal("shop", service.Metadata.Namespace);
    }

    public static TheoryData<string, (string Ip, string Pod, bool Ready, bool Serving, bool Terminating)[], string[]> Conditions => new()
    {
        { "ready ones serve", [("10.0.0.1", "a", true, true, false), ("10.0.0.2", "b", true, true, false)], ["10.0.0.1", "10.0.0.2"] },
        { "not-ready ones are excluded", [("10.0.0.1", "a", true, true, false), ("10.0.0.2", "b", false, false, false)], ["10.0.0.1"] },
        { "serving-but-terminating get no new requests while others are ready", [("10.0.0.1", "a", true, true, false), ("10.0.0.2", "b", false, true, true)], ["10.0.0.1"] },
        { "serving-but-terminating serve when nothing else is ready", [("10.0.0.2", "b", false, true, true), ("10.0.0.3", "c", false, false, false)], ["10.0.0.2"] },
        { "terminating and not serving: never", [("10.0.0.2", "b", false, false, true)], [] },
        { "an endpoint whose pod is unknown has no identity: left out", [("10.0.0.1", "a", true, true, false), ("10.0.0.9", "ghost", true, true, false)], ["10.0.0.1"] },
    };

    [Theory]
    [MemberData(nameof(Conditions))]
    public void EndpointsFollowTheirConditions(string why, (string Ip, string Pod, bool Ready, bool Serving, bool Terminating)[] endpoints, string[] expected)
    {
        var service = Translate(KubeJson.Service("shop", "api"), [KubeJson.EndpointSlice("shop", "api-1", "api", 8080, endpoints)]);
        Assert.True(expected.SequenceEqual(service.Spec.Endpoints.Select(e => e.Address)), why);
    }

    [Fact]
    public void EachEndpointsIdentityIsItsPodsServiceAccountAndSlicesAreMerged()
    {
        var service = Translate(KubeJson.Service("shop", "api"),
        [
            KubeJson.EndpointSlice("shop", "api-1", "api", 8080, ("10.0.0.1", "a", true, true, false)),
            KubeJson.EndpointSlice("shop", "api-2", "api", 8080, ("10.0.0.2", "b", true, true, false), ("10.0.0.1", "a", true, true, false)),
        ]);
        Assert.Equal([("10.0.0.1", "sa-a"), ("10.0.0.2", "sa-b")], service.Spec.Endpoints.Select(e => (e.Address, e.ServiceAccount!)));
    }

    [Fact]
    public void ANamedTargetPortIsResolvedFromTheSlice()
    {
        var json = KubeJson.Service("shop", "api").Replace("\"targetPort\":8080", "\"targetPort\":\"web\"", StringComparison.Ordinal);
        var service = Translate(json, [KubeJson.EndpointSlice("shop", "api-1", "api", 9090, ("10.0.0.1", "a", true, true, false))]);
        Assert.Equal(9090, service.Spec.Ports.Single().TargetPort);
    }

    [Fact]
    public void AHeadlessServiceHasNoAddressesButItsEndpoints()
    {
        var service = Translate(KubeJson.Service("shop", "db", clusterIp: "None"), [KubeJson.EndpointSlice("shop", "db-1", "db", 8080, ("10.0.0.1", "a", true, true, false))]);
        Assert.Empty(service.Spec.Addresses);
        Assert.Equal(["10.0.0.1"], service.Spec.Endpoints.Select(e => e.Address));
    }

    [Fact]
    public void AnExternalNameServiceIsAnEgressHost()
    {
        var json = """
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"payments","namespace":"shop"},
             "spec":{"type":"ExternalName","externalName":"api.payments.example","ports":[{"name":"https","port":443}]}}
            """;
        var service = Translate(json, []);
        Assert.Equal("api.payments.example", service.Spec.Endpoints.Single().Address);
        Assert.Null(service.Spec.Endpoints.Single().ServiceAccount);
        Assert.Equal(AppProtocol.Https, service.Spec.Ports.Single().Protocol);
        Assert.Empty(service.Spec.Addresses);
    }

    [Fact]
    public void AServiceWithoutPortsIsSkippedWithTheReason()
    {
        var service = KubernetesJson.Deserialize<V1Service>("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"x","namespace":"shop"},"spec":{"clusterIP":"None"}}""");
        Assert.Null(ServiceTranslator.Translate(service, [], (_, _) => null, "cluster.local", out var skipped));
        Assert.Equal("it has no ports", skipped);
    }

    private static readonly Dictionary<string, V1Pod> Pods = new()
    {
        ["shop/a"] = KubernetesJson.Deserialize<V1Pod>(KubeJson.Pod("shop", "a", "10.0.0.1", serviceAccount: "sa-a")),
        ["shop/b"] = KubernetesJson.Deserialize<V1Pod>(KubeJson.Pod("shop", "b", "10.0.0.2", serviceAccount: "sa-b")),
        ["shop/c"] = KubernetesJson.Deserialize<V1Pod>(KubeJson.Pod("shop", "c", "10.0.0.3", serviceAccount: "sa-c")),
    };

    private static ServiceResource Translate(string serviceJson, string[] slices, string clusterDomain = "cluster.local")
    {
        var service = KubernetesJson.Deserialize<V1Service>(serviceJson);
        var yaml = ServiceTranslator.Translate(
            service, slices.Select(s => KubernetesJson.Deserialize<V1EndpointSlice>(s)), (ns, name) => Pods.GetValueOrDefault($"{ns}/{name}"), clusterDomain, out var skipped);
        Assert.Null(skipped);
        var parsed = ResourceParser.ParseText(yaml!, "translated");
        Assert.True(parsed.IsValid, string.Join("\n", parsed.Errors) + "\n" + yaml);
        return parsed.OfKind<ServiceResource>().Single();
    }
}
