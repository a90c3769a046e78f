using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Tests.Routing;

/// <summary>Route matching and weighted splits, on snapshots built from YAML exactly as the sidecar builds them.</summary>
public sealed class SnapshotRoutingTests
{
    private static SidecarSnapshot Build(MeshYaml yaml) =>
        SnapshotBuilder.Build(ResourceParser.ParseText(yaml.ToString(), "test.yaml"), "v1", "test.yaml", DateTimeOffset.UnixEpoch);

    private static readonly MeshYaml Routed = new MeshYaml("store", 1)
        .Service("billing", 80, "HTTP", 9001)
        .Service("billing-v2", 80, "HTTP", 9002)
        .Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: billing, namespace: test }
            spec:
              hosts: [billing]
              http:
                - name: canary-header
                  match:
                    - headers: { x-canary: { exact: "yes" } }
                  route:
                    - destination: { host: billing-v2 }
                - name: v2-api
                  match:
                    - uri: { prefix: /v2/ }
                      method: { exact: POST }
                  route:
                    - destination: { host: billing-v2 }
                - name: split
                  route:
                    - destination: { host: billing }
                      weight: 75
                    - destination: { host: billing-v2 }
                      weight: 25
            """);

    [Theory]
    [InlineData("GET", "/charges", null, "split")]
    [InlineData("POST", "/v2/charges", null, "v2-api")]
    [InlineData("GET", "/v2/charges", null, "split")]
    [InlineData("GET", "/charges", "yes", "canary-header")]
    [InlineData("GET", "/charges", "no", "split")]
    public void The_first_matching_rule_wins(string method, string path, string? canary, string rule)
    {
        var snapshot = Build(Routed);
        Assert.True(snapshot.Services.TryResolve("billing", 80, out var vhost));
        var context = new DefaultHttpContext();
        context.Request.Method = method;
        context.Request.Path = path;
        if (canary is not null)
        {
            context.Request.Headers["x-canary"] = canary;
        }

        Assert.Equal(rule, vhost!.Match(context.Request)?.Name);
    }

    [Fact]
    public void A_weighted_split_sends_roughly_its_share_to_each_destination()
    {
        var split = Build(Routed).Services.VirtualHosts.First(v => v.ServiceName == "billing").Rules.Single(r => r.Name == "split");
        var picks = Enumerable.Range(0, 20_000).Select(_ => split.PickCluster().ServiceName).ToList();
        var share = picks.Count(p => p == "billing") / (double)picks.Count;
        Assert.InRange(share, 0.72, 0.78);
    }

    [Fact]
    public void Round_robin_follows_endpoint_weights()
    {
        var snapshot = Build(new MeshYaml("store", 1).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: billing, namespace: test }
            spec:
              ports: [{ port: 80 }]
              endpoints:
                - { address: 127.0.0.1, port: 9001, weight: 3 }
                - { address: 127.0.0.1, port: 9002, weight: 1 }
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: billing, namespace: test }
            spec:
              host: billing
              loadBalancer: { simple: ROUND_ROBIN }
            """));
        Assert.True(snapshot.Services.TryResolve("billing.test.svc.cluster.local", 80, out var vhost));
        var ports = Enumerable.Range(0, 400).Select(_ => vhost!.DefaultCluster.Picker.Pick(0)!.Port).ToList();
        Assert.Equal(300, ports.Count(p => p == 9001));
        Assert.Equal(100, ports.Count(p => p == 9002));
    }

    [Fact]
    public void Two_services_claiming_one_host_refuse_the_snapshot()
    {
        var yaml = new MeshYaml("store", 1).Service("billing", 80, "HTTP", 9001).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: payments, namespace: test }
            spec:
              hosts: [billing]
              ports: [{ port: 80 }]
            """);
        var ex = Assert.Throws<ConfigException>(() => Build(yaml));
        Assert.Contains(ex.Errors, e => e.FieldPath == "spec.hosts" && e.Reason.Contains("already claimed", StringComparison.Ordinal));
    }

    [Fact]
    public void A_file_without_a_sidecar_resource_is_refused()
    {
        var ex = Assert.Throws<ConfigException>(() => SnapshotBuilder.Build(ResourceParser.ParseText("", "empty.yaml"), "v", "empty.yaml", DateTimeOffset.UnixEpoch));
        Assert.Contains("no Sidecar resource", ex.Message, StringComparison.Ordinal);
    }
}
