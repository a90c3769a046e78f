using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

public sealed class ResourceParserTests
{
    private const string Header = "apiVersion: meshproxy.io/v1alpha1\n";

    [Fact]
    public void Several_documents_per_file_each_become_a_resource_with_its_source_line()
    {
        var result = ResourceParser.ParseText(Header + """
            kind: Service
            metadata: { name: billing, namespace: shop }
            spec:
              ports: [{ port: 80, targetPort: 8080, protocol: grpc }]
              endpoints: [{ address: 10.0.0.7, serviceAccount: billing }]
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: store, namespace: shop }
            spec:
              app: { port: 8080 }
              inboundConnectionPool: { tcp: { maxConnections: 200 } }
            """, "mesh.yaml").ThrowIfInvalid();

        var service = Assert.Single(result.OfKind<ServiceResource>());
        Assert.Equal(["billing", "billing.shop", "billing.shop.svc.cluster.local"], service.Spec.Hosts);
        Assert.Equal(AppProtocol.Grpc, service.Spec.Ports[0].Protocol);
        Assert.Equal(8080, service.Spec.Ports[0].TargetPort);
        Assert.Equal("billing", service.Spec.Endpoints[0].ServiceAccount);
        var sidecar = Assert.Single(result.OfKind<SidecarResource>());
        Assert.Equal(new SourceLocation("mesh.yaml", 8), sidecar.Source);
        Assert.Equal(ListenerPorts.Default, sidecar.Spec.Listeners);
        Assert.Equal(TimeSpan.FromSeconds(5), sidecar.Spec.DrainDuration);
        Assert.Equal(200, sidecar.Spec.InboundMaxConnections);
    }

    [Theory]
    [InlineData("kind: Service\nmetadata: { name: b }\nspec:\n  ports: [{ port: 0 }]\n", 5, "spec.ports[0].port", "between 1 and 65535")]
    [InlineData("kind: Service\nmetadata: { name: b }\nspec:\n  ports: [{ port: 80, protocol: SMTP }]\n", 5, "spec.ports[0].protocol", "'SMTP' is not one of")]
    [InlineData("kind: Service\nmetadata: { name: B_ad }\nspec:\n  ports: [{ port: 80 }]\n", 3, "metadata.name", "lowercase DNS name")]
    [InlineData("kind: Service\nmetadata: { name: b }\nspec:\n  ports: [{ port: 80 }]\n  endpoints: [{ address: 'not an ip' }]\n", 6, "spec.endpoints[0].address", "neither an IP address")]
    [InlineData("kind: Service\nmetadata: { name: b }\nspec: {}\n", 4, "spec.ports", "is required")]
    [InlineData("kind: Gateway\nmetadata: { name: b }\nspec: {}\n", 2, "kind", "unknown kind 'Gateway'")]
    [InlineData("kind: Sidecar\nmetadata: { name: s }\nspec:\n  app: { port: 8080 }\n  drainDuration: 5\n", 6, "spec.drainDuration", "not a duration")]
    [InlineData("kind: Sidecar\nmetadata: { name: s }\nspec:\n  app: { port: 8080 }\n  controlPlane: { address: 'https://cp:15012', tokenFile: t }\n", 6, "spec.controlPlane.caFile", "needs caFile")]
    [InlineData("kind: Sidecar\nmetadata: { name: s }\nspec:\n  app: { port: 8080 }\n  controlPlane: { address: 'https://cp:15012' }\n", 6, "spec.controlPlane.caFile", "needs caFile")]
    [InlineData("kind: Sidecar\nmetadata: { name: s }\nspec:\n  app: { port: 8080 }\n  inboundConnectionPool: { tcp: { maxConnections: 0 } }\n", 6, "spec.inboundConnectionPool.tcp.maxConnections", "between 1 and")]
    [InlineData("kind: HttpRoute\nmetadata: { name: r }\nspec:\n  hosts: [b]\n  http:\n    - route:\n        - destination: { host: a }\n          weight: 60\n        - destination: { host: c }\n          weight: 30\n", 7, "spec.http[0].route", "add up to 90")]
    [InlineData("kind: HttpRoute\nmetadata: { name: r }\nspec:\n  hosts: [b]\n  http:\n    - match: [{ uri: { prefix: /a, exact: /b } }]\n      route: [{ destination: { host: a } }]\n", 7, "spec.http[0].match[0].uri", "exactly one of")]
    [InlineData("kind: MeshConfig\nmetadata: { name: mesh }\nspec:\n  pathNormalization: { normalization: DEFAULT }\n", 5, "spec.pathNormalization.normalization", "'DEFAULT' is not one of")]
    [InlineData("kind: MeshConfig\nmetadata: { name: mesh }\nspec:\n  pathNormalization: { pathParameters: CUT }\n", 5, "spec.pathNormalization.pathParameters", "'CUT' is not one of")]
    [InlineData("kind: HttpRoute\nmetadata: { name: r }\nspec:\n  hosts: [b]\n  http:\n    - match: [{ uri: { regex: '(' } }]\n      route: [{ destination: { host: a } }]\n", 7, "spec.http[0].match[0].uri.regex", "not a valid regular expression")]
    public void Errors_name_file_line_field_and_reason(string yaml, int line, string field, string reason)
    {
        var result = ResourceParser.ParseText(Header + yaml, "bad.yaml");
        Assert.Empty(result.Resources);
        var error = Assert.Single(result.Errors);
        Assert.Equal("bad.yaml", error.File);
        Assert.Equal(line, error.Line);
        Assert.Equal(field, error.FieldPath);
        Assert.Contains(reason, error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Yaml_that_is_not_yaml_is_one_clear_error()
    {
        var result = ResourceParser.ParseText("kind: [unclosed\n", "broken.yaml");
        var error = Assert.Single(result.Errors);
        Assert.Contains("not valid YAML", error.Reason, StringComparison.Ordinal);
        Assert.Equal(2, error.Line);
    }

    [Fact]
    public void Unknown_fields_are_warnings_and_the_resource_is_kept()
    {
        var result = ResourceParser.ParseText(Header + "kind: Service\nmetadata: { name: b, colour: blue }\nspec:\n  ports: [{ port: 80 }]\n  futureField: 1\n", "new.yaml");
        Assert.True(result.IsValid);
        Assert.Single(result.Resources);
        Assert.Equal(["metadata.colour", "spec.futureField"], result.Warnings.Select(w => w.FieldPath));
    }

    [Fact]
    public void One_bad_resource_does_not_take_the_others_in_the_file_down()
    {
        var result = ResourceParser.ParseText(Header + "kind: Service\nmetadata: { name: good }\nspec:\n  ports: [{ port: 80 }]\n---\n" + Header + "kind: Service\nmetadata: { name: bad }\nspec:\n  ports: [{ port: -1 }]\n", "mixed.yaml");
        Assert.Equal("good", Assert.Single(result.Resources).Metadata.Name);
        Assert.Single(result.Errors);
    }

    [Fact]
    public void Duplicate_names_are_refused_pointing_at_the_first()
    {
        var doc = Header + "kind: Service\nmetadata: { name: b }\nspec:\n  ports: [{ port: 80 }]\n";
        var result = ResourceParser.ParseText(doc + "---\n" + doc, "dup.yaml");
        Assert.Single(result.Resources);
        Assert.Contains("duplicate Service 'default/b' (first defined at dup.yaml:1)", Assert.Single(result.Errors).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wrong_api_version_is_refused()
    {
        var result = ResourceParser.ParseText("apiVersion: networking.istio.io/v1\nkind: Service\nmetadata: { name: b }\nspec:\n  ports: [{ port: 80 }]\n", "v.yaml");
        Assert.Equal("apiVersion", Assert.Single(result.Errors).FieldPath);
    }

    [Fact]
    public void Control_plane_ca_file_is_read_and_plaintext_needs_none()
    {
        var tls = ResourceParser.ParseText(Header + """
            kind: Sidecar
            metadata: { name: s }
            spec:
              app: { port: 8080 }
              controlPlane: { address: 'https://cp:15012', tokenFile: t, caFile: root.pem }
            """, "s.yaml").ThrowIfInvalid();
        Assert.Equal(new ControlPlaneSpec("https://cp:15012", "t", null, "root.pem"), Assert.Single(tls.OfKind<SidecarResource>()).Spec.ControlPlane);

        var plain = ResourceParser.ParseText(Header + """
            kind: Sidecar
            metadata: { name: s }
            spec:
              app: { port: 8080 }
              controlPlane: { address: 'http://127.0.0.1:15010', tokenFile: t }
            """, "s.yaml").ThrowIfInvalid();
        Assert.Null(Assert.Single(plain.OfKind<SidecarResource>()).Spec.ControlPlane!.CaFile);
    }
}
