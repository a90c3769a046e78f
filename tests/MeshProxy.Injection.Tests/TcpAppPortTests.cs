using System.Text.Json.Nodes;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// An app port that carries TCP reaches the sidecar's bootstrap as <c>app.protocol: TCP</c> (so plaintext to it is a
/// byte stream, not HTTP): by the appProtocol annotation, by the pod's opaque-ports annotation (the one the control
/// plane reads on a Service), or by Istio's port-name prefixes.
/// </summary>
public sealed class TcpAppPortTests
{
    [Theory]
    [InlineData(null, null, "db", AppProtocol.Http)]
    [InlineData(null, null, "tcp-postgres", AppProtocol.Tcp)]
    [InlineData(null, null, "mysql", AppProtocol.Tcp)]
    [InlineData(null, null, "redis-main", AppProtocol.Tcp)]
    [InlineData(null, "5432", "http-admin", AppProtocol.Tcp)]      // opaque wins over the name
    [InlineData(null, "6379, 5432", null, AppProtocol.Tcp)]
    [InlineData(null, "6379", "grpc", AppProtocol.Grpc)]           // another port listed: the name decides
    [InlineData("TCP", null, "http", AppProtocol.Tcp)]
    [InlineData("http", "5432", null, AppProtocol.Http)]           // the explicit annotation wins
    public void The_app_ports_protocol_follows_the_annotations_then_the_port_name(string? appProtocol, string? opaquePorts, string? portName, AppProtocol expected)
    {
        var annotations = new Dictionary<string, string>();
        if (appProtocol is not null)
        {
            annotations[Annotations.AppProtocol] = appProtocol;
        }

        if (opaquePorts is not null)
        {
            annotations[Annotations.OpaquePorts] = opaquePorts;
        }

        var injected = new SidecarInjector(InjectionGoldenTests.Options).Inject(Pod(annotations, portName), new InjectionTarget("shop")).Pod;
        var bootstrap = ResourceParser.ParseText(injected["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>(), "bootstrap.yaml").ThrowIfInvalid();
        Assert.Equal(new AppSpec(5432, expected), Assert.Single(bootstrap.OfKind<SidecarResource>()).Spec.App);
    }

    [Fact]
    public void A_port_list_that_is_not_ports_is_refused_naming_the_annotation()
    {
        var error = Assert.Throws<InjectionException>(() => new SidecarInjector(InjectionGoldenTests.Options)
            .Inject(Pod(new() { [Annotations.OpaquePorts] = "5432,postgres" }, "db"), new InjectionTarget("shop")));
        Assert.Equal("meshproxy.io/opaque-ports: 'postgres' is not a port (1-65535)", error.Message);
    }

    private static JsonObject Pod(Dictionary<string, string> annotations, string? portName)
    {
        var port = new JsonObject { ["containerPort"] = 5432 };
        if (portName is not null)
        {
            port["name"] = portName;
        }

        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Pod",
            ["metadata"] = new JsonObject
            {
                ["name"] = "db-0",
                ["annotations"] = new JsonObject(annotations.Select(a => KeyValuePair.Create(a.Key, (JsonNode?)JsonValue.Create(a.Value)))),
            },
            ["spec"] = new JsonObject
            {
                ["containers"] = new JsonArray(new JsonObject { ["name"] = "db", ["image"] = "registry.example/db:1", ["ports"] = new JsonArray(port) }),
            },
        };
    }
}
